"""The one-copy helpers: LongRoPE's default attention factor and "keep the highest fraction"."""

from __future__ import annotations

import math

import pytest

from ropekit import RopeConfig
from ropekit.core.frequencies import kept_pairs, longrope_attention_factor, longrope_default_attention
from ropekit.core.scaling import Proportional
from ropekit.testing.hf_grid import grid_config

transformers = pytest.importorskip("transformers")
from transformers import AutoConfig  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402


@pytest.mark.parametrize("max_position", [4096, 8192, 131072, 262144])
def test_longrope_default_attention_matches_transformers(max_position: int) -> None:
    d = grid_config("phi3-mini-128k-longrope")
    d["max_position_embeddings"] = max_position
    d["rope_scaling"] = {k: v for k, v in d["rope_scaling"].items() if k != "attention_factor"}
    model_type = d.pop("model_type")
    _, hf_attn = ROPE_INIT_FUNCTIONS["longrope"](AutoConfig.for_model(model_type, **d), "cpu")
    L0 = d["original_max_position_embeddings"]
    assert math.isclose(longrope_default_attention(max_position / L0, L0), float(hf_attn), rel_tol=1e-12)
    params = RopeConfig.from_hf({"model_type": model_type, **d}).scaling
    assert params is not None and params.attention_factor is None
    assert longrope_attention_factor(params) == longrope_default_attention(max_position / L0, L0)


def test_longrope_default_attention_edges() -> None:
    assert longrope_default_attention(1.0, 4096) == 1.0 == longrope_default_attention(0.5, 1)
    with pytest.raises(ValueError, match="original_max_position_embeddings must be > 1"):
        longrope_default_attention(2.0, 1)


@pytest.mark.parametrize("pairs", [1, 3, 4, 32, 64, 100])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.3, 0.4, 0.5, 0.57, 0.7, 0.75, 1.0])
def test_kept_pairs_is_transformers_rule(fraction: float, pairs: int) -> None:
    """The rule proportional uses: the zero-frequency tail transformers' own table has."""
    n = kept_pairs(fraction, pairs)
    assert 0 <= n <= pairs and n <= fraction * pairs < n + 1
    if fraction == 0:
        return
    d = {"model_type": "llama", "hidden_size": 2 * pairs * 4, "num_attention_heads": 4, "head_dim": 2 * pairs,
         "max_position_embeddings": 4096, "rope_theta": 10000.0,
         "rope_scaling": {"rope_type": "proportional", "factor": 1.0, "partial_rotary_factor": fraction}}
    if "proportional" not in ROPE_INIT_FUNCTIONS:
        pytest.skip("this transformers has no proportional RoPE")  # the invariants above still ran
    model_type = d.pop("model_type")
    inv, _ = ROPE_INIT_FUNCTIONS["proportional"](AutoConfig.for_model(model_type, **d), "cpu")
    assert int((inv != 0).sum()) == n
    assert int((RopeConfig(head_dim=2 * pairs, scaling=Proportional(partial_rotary_factor=fraction)).inv_freq()
                 != 0).sum()) == n


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.5", float("nan")])
def test_kept_pairs_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="fraction must be a number in"):
        kept_pairs(bad, 4)  # type: ignore[arg-type]

