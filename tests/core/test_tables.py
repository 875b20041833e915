"""Precise cos/sin: <= 1e-6 from a float64 reference up to 2**20 positions, for every method."""

from __future__ import annotations

import pytest
import torch

from ropekit import RopeConfig
from ropekit.core.tables import cos_sin, cos_sin_table
from ropekit.testing.hf_grid import GRID, grid_config

POS = torch.cat([torch.arange(0, 4096), torch.randint(0, 2**20, (4096,), generator=torch.Generator().manual_seed(0)),
                 torch.arange(2**20 - 512, 2**20)])


def f64_reference(cfg: RopeConfig, positions: torch.Tensor, seq_len: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    ang = positions.double()[:, None] * cfg.inv_freq(seq_len)
    return ang.cos() * cfg.attention_factor, ang.sin() * cfg.attention_factor


@pytest.mark.parametrize("name", list(GRID))
def test_cos_sin_error_below_1e6_up_to_1m_positions(name: str) -> None:
    cfg = RopeConfig.from_hf(grid_config(name))
    seq_len = 2**20 if cfg.scaling is not None and cfg.scaling.depends_on_seq_len else None
    cos, sin = cfg.cos_sin(POS, seq_len=seq_len)
    assert cos.dtype == sin.dtype == torch.float32
    rc, rs = f64_reference(cfg, POS, seq_len)
    err = max((cos.double() - rc).abs().max().item(), (sin.double() - rs).abs().max().item())
    assert err <= 1e-6, err


def test_fp32_angles_would_fail_the_bar() -> None:
    """The test above can fail: forming angles in fp32 (the common bug) is ~1e-2 off at 1M positions."""
    cfg = RopeConfig(head_dim=128, base=500000.0)
    ang32 = POS.float()[:, None] * cfg.inv_freq().float()
    rc, _ = f64_reference(cfg, POS, None)
    assert (ang32.cos().double() - rc).abs().max().item() > 1e-3


def test_table_matches_gathered_and_rows_are_positions() -> None:
    cfg = RopeConfig(head_dim=64, base=100000.0)
    cos_t, sin_t = cfg.cos_sin_table(1000)
    assert cos_t.shape == (1000, 32)
    pos = torch.tensor([0, 5, 999])
    c, s = cfg.cos_sin(pos)
    assert torch.equal(cos_t[pos], c) and torch.equal(sin_t[pos], s)
    assert torch.equal(cos_t[0], torch.ones(32)) and torch.equal(sin_t[0], torch.zeros(32))


def test_attention_factor_scales_cos_and_sin() -> None:
    inv = torch.tensor([1.0, 0.1], dtype=torch.float64)
    c1, s1 = cos_sin(inv, torch.arange(5))
    c2, s2 = cos_sin(inv, torch.arange(5), attention_factor=1.5)
    torch.testing.assert_close(c2, c1 * 1.5)
    torch.testing.assert_close(s2, s1 * 1.5)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_table_length_must_be_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="length"):
        cos_sin_table(torch.ones(2, dtype=torch.float64), bad)  # type: ignore[arg-type]
