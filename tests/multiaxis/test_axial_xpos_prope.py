"""RoPE-Axial, RoPE-Mixed, xPos and p-RoPE: relative-position properties and agreement with 1-D RoPE."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit.core.reference import rotate_gathered
from ropekit.multiaxis import (
    RoPEMixed,
    apply_axial,
    apply_xpos,
    axial_inv_freq,
    p_rope_cos_sin_table,
    p_rope_inv_freq,
)


def _grid(h: int, w: int) -> torch.Tensor:
    r, c = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack((r, c), -1).reshape(h * w, 2)


def _scores(q, k):
    return torch.einsum("bqhd,bkhd->bhqk", q, k)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_axial_scores_depend_on_2d_offset_only(layout):
    torch.manual_seed(0)
    inv = axial_inv_freq(32, 2)
    q0, k0 = torch.randn(1, 1, 2, 32, dtype=torch.float64), torch.randn(1, 1, 2, 32, dtype=torch.float64)
    a = torch.tensor([[3, 5], [1, 2]])
    b = a + torch.tensor([4, -1])  # shift both tokens by the same 2-D offset
    sa = _scores(*apply_axial(q0.expand(1, 2, 2, 32), k0.expand(1, 2, 2, 32), a, inv, layout=layout))
    sb = _scores(*apply_axial(q0.expand(1, 2, 2, 32), k0.expand(1, 2, 2, 32), b, inv, layout=layout))
    torch.testing.assert_close(sa, sb, rtol=1e-6, atol=1e-6)


def test_axial_on_one_axis_is_1d_rope_on_its_pairs():
    inv = axial_inv_freq(16, 2, base=100.0)
    coords = torch.stack((torch.arange(5), torch.zeros(5, dtype=torch.long)), -1)  # column fixed at 0
    x = torch.randn(1, 5, 1, 16)
    got, _ = apply_axial(x, None, coords, inv)
    cos = torch.cat((torch.arange(5)[:, None] * inv[0], torch.zeros(5, 4, dtype=torch.float64)), -1)
    want = rotate_gathered(x, cos.cos().float(), cos.sin().float())
    torch.testing.assert_close(got, want)
    assert axial_inv_freq(24, 3).shape == (3, 4)
    with pytest.raises(ValueError, match="split evenly"):
        axial_inv_freq(20, 3)
    with pytest.raises(ValueError, match="n_axes=2"):
        apply_axial(x, None, torch.zeros(5, 3), inv)


def test_rope_mixed_is_relative_per_head_and_learns():
    torch.manual_seed(0)
    rope = RoPEMixed(head_dim=16, heads=3, n_axes=2, generator=torch.Generator().manual_seed(0))
    q0, k0 = torch.randn(1, 1, 3, 16), torch.randn(1, 1, 3, 16)
    a = torch.tensor([[0, 1], [2, 3]])
    sa = _scores(*rope(q0.expand(1, 2, 3, 16), k0.expand(1, 2, 3, 16), a))
    sb = _scores(*rope(q0.expand(1, 2, 3, 16), k0.expand(1, 2, 3, 16), a + torch.tensor([5, 7])))
    torch.testing.assert_close(sa, sb, rtol=1e-5, atol=1e-5)
    # heads get different frequencies; gradients reach them
    assert not torch.allclose(rope.freqs[0], rope.freqs[1])
    q = torch.randn(2, 6, 3, 16, requires_grad=True)
    out, _ = rope(q, None, _grid(2, 3))
    out.pow(2).sum().backward()
    assert rope.freqs.grad is not None and rope.freqs.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="heads=3"):
        rope(torch.randn(1, 6, 2, 16), None, _grid(2, 3))


def test_rope_mixed_gradient_matches_finite_differences():
    rope = RoPEMixed(head_dim=4, heads=1, n_axes=2, generator=torch.Generator().manual_seed(1)).double()
    x = torch.randn(1, 3, 1, 4, dtype=torch.float64)
    coords = torch.tensor([[0, 1], [2, 0], [1, 1]])

    def f(freqs):
        ang = torch.einsum("sa,hta->sht", coords.double(), freqs)
        return rotate_gathered(x.unsqueeze(-2), ang.cos(), ang.sin()).sum()

    assert torch.autograd.gradcheck(f, (rope.freqs.detach().clone().requires_grad_(True),))


def test_xpos_is_relative_and_decays():
    cfg = ropekit.RopeConfig(head_dim=32)
    q0, k0 = torch.randn(1, 1, 1, 32, dtype=torch.float64), torch.randn(1, 1, 1, 32, dtype=torch.float64)

    def score(m, n, center=0.0):
        q, _ = apply_xpos(q0, q0, cfg, torch.tensor([m]), scale_base=64.0, center=center)
        _, k = apply_xpos(k0, k0, cfg, torch.tensor([n]), scale_base=64.0, center=center)
        return (q * k).sum().item()

    assert score(10, 4) == pytest.approx(score(110, 104), rel=1e-5)
    assert score(10, 4) == pytest.approx(score(10, 4, center=50.0), rel=1e-5)
    # with a huge scale_base xPos is plain RoPE
    q, k = apply_xpos(q0, k0, cfg, torch.tensor([7]), scale_base=1e12)
    c, s = cfg.cos_sin(torch.tensor([7]))
    torch.testing.assert_close(q, rotate_gathered(q0, c, s))
    torch.testing.assert_close(k, rotate_gathered(k0, c, s))
    with pytest.raises(ValueError, match="scale_base"):
        apply_xpos(q0, k0, cfg, torch.tensor([7]), scale_base=0.0)


def test_p_rope():
    cfg = ropekit.RopeConfig(head_dim=64, base=10000.0)
    inv = p_rope_inv_freq(cfg, 0.25)
    assert (inv[:8] > 0).all() and (inv[8:] == 0).all()
    # Gemma's proportional rotary is p-RoPE over the full head
    prop = ropekit.RopeConfig(head_dim=64, scaling=ropekit.Proportional(partial_rotary_factor=0.25))
    torch.testing.assert_close(inv, prop.inv_freq(), rtol=0, atol=0)
    assert torch.equal(p_rope_inv_freq(cfg, 1.0), cfg.inv_freq())
    assert (p_rope_inv_freq(cfg, 0.0) == 0).all()
    cos, sin = p_rope_cos_sin_table(cfg, 0.5, 10)
    assert (cos[:, 16:] == 1).all() and (sin[:, 16:] == 0).all()  # removed pairs never rotate
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="fraction in \\[0, 1\\]"):
            p_rope_inv_freq(cfg, bad)
