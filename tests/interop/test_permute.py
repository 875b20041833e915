"""permute_qk: permuted projection + dst RoPE == original projection + src RoPE, then permuted channels."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit.core.reference import rotate_gathered
from ropekit.interop import layout_permutation, permute_qk

N_HEADS, N_KV, HD, D_MODEL = 6, 2, 16, 40


@pytest.mark.parametrize("rotary_dim", [None, 8, 2], ids=["full", "partial8", "partial2"])
@pytest.mark.parametrize(("src", "dst"), [("interleaved", "half"), ("half", "interleaved")])
def test_projection_then_rope_commutes_with_permutation(src, dst, rotary_dim):
    torch.manual_seed(0)
    cfg = ropekit.RopeConfig(head_dim=HD, base=500.0, rotary_dim=rotary_dim)
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    pos = torch.tensor([[3, 4, 5, 6, 7], [0, 9, 2, 11, 4]])
    cos, sin = cfg.cos_sin(pos)
    perm = layout_permutation(HD, src, dst, rotary_dim)
    outs = {}
    for name, heads in (("q", N_HEADS), ("k", N_KV)):  # GQA: k uses the kv-head count
        w = torch.randn(heads * HD, D_MODEL, dtype=torch.float64)
        b = torch.randn(heads * HD, dtype=torch.float64)
        ref = rotate_gathered((x @ w.T + b).reshape(2, 5, heads, HD), cos, sin, layout=src)[..., perm]
        wp = permute_qk(w, heads, HD, src=src, dst=dst, rotary_dim=rotary_dim)
        bp = permute_qk(b, heads, HD, src=src, dst=dst, rotary_dim=rotary_dim)
        got = rotate_gathered((x @ wp.T + bp).reshape(2, 5, heads, HD), cos, sin, layout=dst)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
        outs[name] = (got, rotate_gathered((x @ w.T + b).reshape(2, 5, heads, HD), cos, sin, layout=src))
    # attention scores are layout-independent
    (q_dst, q_src), (k_dst, k_src) = outs["q"], outs["k"]
    s_dst = torch.einsum("bqhd,bkhd->bhqk", q_dst, k_dst.repeat_interleave(3, dim=2))
    s_src = torch.einsum("bqhd,bkhd->bhqk", q_src, k_src.repeat_interleave(3, dim=2))
    torch.testing.assert_close(s_dst, s_src, rtol=1e-10, atol=1e-10)


def test_permutation_is_invertible_and_wrong_layout_breaks_it():
    w = torch.randn(N_KV * HD, D_MODEL)
    there = permute_qk(w, N_KV, HD, "interleaved", "half")
    assert torch.equal(permute_qk(there, N_KV, HD, "half", "interleaved"), w)
    assert torch.equal(permute_qk(w, N_KV, HD, "half", "half"), w)
    assert not torch.equal(there, w)
    # LoRA B (out, r) and a transposed weight via dim=
    assert torch.equal(permute_qk(w.T, N_KV, HD, dim=1), there.T)


def test_bad_arguments():
    w = torch.randn(N_HEADS * HD, D_MODEL)
    with pytest.raises(ValueError, match="kv-head count"):
        permute_qk(w, N_KV, HD)
    with pytest.raises(ValueError, match="Did you mean 'half'"):
        permute_qk(w, N_HEADS, HD, dst="halt")
    with pytest.raises(ValueError, match="rotary_dim must be even"):
        permute_qk(w, N_HEADS, HD, rotary_dim=5)
    with pytest.raises(TypeError, match="torch.Tensor"):
        permute_qk(w.tolist(), N_HEADS, HD)
    with pytest.raises(ValueError, match="dim must index"):
        permute_qk(w, N_HEADS, HD, dim=2)
