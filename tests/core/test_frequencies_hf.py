"""Exactness: ropekit's inv_freq and attention factor equal transformers' ROPE_INIT_FUNCTIONS."""

from __future__ import annotations

import math

import pytest
import torch

from ropekit import RopeConfig
from ropekit.testing.hf_grid import GRID, grid_config, hf_frequencies

transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

# HF computes in float32; ropekit in float64. Agreement to a few fp32 ulps is exactness here.
RTOL = 4 * torch.finfo(torch.float32).eps


CASES = [(name, s) for name, (_, seqs) in GRID.items() for s in seqs]


@pytest.mark.parametrize(("name", "seq_len"), CASES, ids=[f"{n}@{s}" for n, s in CASES])
def test_inv_freq_and_attention_factor_match_hf(name: str, seq_len: int | None) -> None:
    d = grid_config(name)
    ours = RopeConfig.from_hf(d)
    ref_inv, ref_attn = hf_frequencies(d, seq_len)
    inv = ours.inv_freq(seq_len)
    assert inv.dtype == torch.float64
    assert inv.shape == ref_inv.shape
    torch.testing.assert_close(inv, ref_inv.double(), rtol=RTOL, atol=0)
    assert math.isclose(ours.attention_factor, float(ref_attn), rel_tol=1e-12)


def test_grid_covers_every_hf_method() -> None:
    """Every method the installed transformers implements is in the grid (plus the default)."""
    covered = {RopeConfig.from_hf(grid_config(n)).method for n in GRID}
    assert set(ROPE_INIT_FUNCTIONS) | {"default"} <= covered


def test_grid_would_catch_an_fp32_or_formula_slip() -> None:
    """The tolerance is tight enough that a 1e-5 relative error (e.g. a wrong constant) fails."""
    d = grid_config("llama3.1-8b")
    ref, _ = hf_frequencies(d, None)
    bad = RopeConfig.from_hf(d).inv_freq() * (1 + 1e-5)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(bad, ref.double(), rtol=RTOL, atol=0)
