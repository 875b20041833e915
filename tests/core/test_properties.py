"""RoPE's defining properties, as hypothesis property tests on the reference."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropekit import RopeConfig
from ropekit.core.reference import rotate_gathered

pos_st = st.integers(0, 2**20)
dims = st.sampled_from([4, 8, 16, 64])
layouts = st.sampled_from(["half", "interleaved"])
bases = st.sampled_from([10000.0, 500000.0, 100.0])
SETTINGS = settings(max_examples=40, deadline=None)


def rot(x: torch.Tensor, cfg: RopeConfig, p: int, sign: int = 1) -> torch.Tensor:
    ang = cfg.inv_freq() * p * sign
    return rotate_gathered(x, ang.cos()[None], ang.sin()[None], layout=cfg.layout)


def vec(seed: int, d: int) -> torch.Tensor:
    return torch.randn(1, 1, 1, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@SETTINGS
@given(m=pos_st, n=pos_st, shift=st.integers(0, 2**20), d=dims, layout=layouts, base=bases, seed=st.integers(0, 99))
def test_score_depends_only_on_relative_position(m, n, shift, d, layout, base, seed) -> None:
    cfg = RopeConfig(head_dim=d, base=base, layout=layout)
    q, k = vec(seed, d), vec(seed + 1, d)
    s1 = (rot(q, cfg, m) * rot(k, cfg, n)).sum()
    s2 = (rot(q, cfg, m + shift) * rot(k, cfg, n + shift)).sum()
    assert torch.allclose(s1, s2, atol=1e-7 * d)


@SETTINGS
@given(m=pos_st, d=dims, layout=layouts, seed=st.integers(0, 99))
def test_norm_preserved_and_inverse_is_identity(m, d, layout, seed) -> None:
    cfg = RopeConfig(head_dim=d, layout=layout)
    x = vec(seed, d)
    y = rot(x, cfg, m)
    assert torch.allclose(y.norm(), x.norm(), rtol=1e-12)
    assert torch.allclose(rot(y, cfg, m, sign=-1), x, atol=1e-12)


def half_to_interleaved(x: torch.Tensor) -> torch.Tensor:
    """Pair permutation: half layout channels (i, i + d/2) -> interleaved (2i, 2i+1)."""
    d = x.shape[-1]
    return torch.stack((x[..., : d // 2], x[..., d // 2 :]), -1).flatten(-2)


@SETTINGS
@given(m=pos_st, d=dims, seed=st.integers(0, 99))
def test_half_and_interleaved_agree_under_the_pair_permutation(m, d, seed) -> None:
    x = vec(seed, d)
    half = rot(x, RopeConfig(head_dim=d, layout="half"), m)
    inter = rot(half_to_interleaved(x), RopeConfig(head_dim=d, layout="interleaved"), m)
    assert torch.allclose(half_to_interleaved(half), inter, atol=1e-12)


@SETTINGS
@given(m=st.integers(0, 4096), seed=st.integers(0, 99))
def test_half_layout_is_hf_rotate_half(m, seed) -> None:
    from transformers.models.llama.modeling_llama import rotate_half

    cfg = RopeConfig(head_dim=16)
    x = vec(seed, 16)[0, 0]  # (1, 16)
    ang = torch.cat([cfg.inv_freq() * m] * 2)
    assert torch.allclose(rot(x[None, None], cfg, m)[0, 0], x * ang.cos() + rotate_half(x) * ang.sin(), atol=1e-12)
