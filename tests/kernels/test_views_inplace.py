"""Strided views of a fused qkv projection, in-place updates, k=None and odd gradients."""

from __future__ import annotations

import pytest
import torch

from ropekit.core.reference import rotate_qk_ref
from ropekit.functional import apply_rotary
from tests.kernels import kit

DTYPES = (torch.float32, torch.bfloat16)


def _qkv(device, dtype, batch=2, seqlen=5, hq=7, hkv=3, d=80, seed=0):
    gen = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, seqlen, hq + 2 * hkv, d, generator=gen).to(device, dtype)
    return qkv, qkv[:, :, :hq], qkv[:, :, hq: hq + hkv]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_slices_of_fused_qkv(backend, layout, dtype):
    qkv, q, k = _qkv(backend.device, dtype)
    assert not q.is_contiguous() and not k.is_contiguous()
    cos, sin = kit.tables(48, backend.device)
    pos = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]], device=backend.device)
    q_ref, k_ref = rotate_qk_ref(q, k, cos, sin, positions=pos, layout=layout)
    q_out, k_out = apply_rotary(q, k, cos, sin, positions=pos, layout=layout, backend=backend.name)
    kit.assert_close(q_out, q_ref, dtype, "q")
    kit.assert_close(k_out, k_ref, dtype, "k")

    before = qkv.clone()
    q2, k2 = apply_rotary(q, k, cos, sin, positions=pos, layout=layout, inplace=True, backend=backend.name)
    assert q2 is q and k2 is k
    kit.assert_close(qkv[:, :, :7], q_ref, dtype, "q in place")
    kit.assert_close(qkv[:, :, 7:10], k_ref, dtype, "k in place")
    assert torch.equal(qkv[:, :, 10:], before[:, :, 10:]), "v must not be touched"
    assert torch.equal(qkv[..., 48:], before[..., 48:]), "the partial-rotary tail must not be touched"


def test_transposed_view_and_backward(backend):
    # (batch, heads, seqlen, head_dim) storage seen as (batch, seqlen, heads, head_dim).
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, 6, 64, generator=gen).to(backend.device).transpose(1, 2).requires_grad_()
    k = torch.randn(2, 2, 6, 64, generator=gen).to(backend.device).transpose(1, 2)
    cos, sin = kit.tables(64, backend.device)
    q_out, k_out = apply_rotary(q, k, cos, sin, offset=7, backend=backend.name)
    q_out.sum().backward()  # an expanded (stride 0) gradient
    qr = q.detach().clone().requires_grad_()
    q_ref, k_ref = rotate_qk_ref(qr, k, cos, sin, offset=7)
    q_ref.sum().backward()
    kit.assert_close(q_out, q_ref, torch.float32, "q")
    kit.assert_close(k_out, k_ref, torch.float32, "k")
    kit.assert_close(q.grad, qr.grad, torch.float32, "q grad")


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_inplace_autograd_on_non_leaf(backend, layout):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 3, 64, generator=gen).to(backend.device).requires_grad_()
    y = torch.randn(2, 5, 1, 64, generator=gen).to(backend.device).requires_grad_()
    cos, sin = kit.tables(32, backend.device)
    off = torch.tensor([0, 11], device=backend.device)
    q, k = x * 2, y * 3
    q2, k2 = apply_rotary(q, k, cos, sin, offset=off, layout=layout, inplace=True, backend=backend.name)
    assert q2 is q and k2 is k
    (q2.square().sum() + k2.sum()).backward()

    xr, yr = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    qr, kr = rotate_qk_ref(xr * 2, yr * 3, cos, sin, offset=off, layout=layout)
    (qr.square().sum() + kr.sum()).backward()
    kit.assert_close(q2.detach(), qr.detach(), torch.float32, "q")
    kit.assert_close(x.grad, xr.grad, torch.float32, "x grad")
    kit.assert_close(y.grad, yr.grad, torch.float32, "y grad")


def test_inplace_on_leaf_requiring_grad_raises(backend):
    q = torch.randn(1, 2, 1, 8, device=backend.device, requires_grad=True)
    cos, sin = kit.tables(8, backend.device)
    with pytest.raises(RuntimeError, match="in-place"):
        apply_rotary(q, None, cos, sin, inplace=True, backend=backend.name)


@pytest.mark.parametrize("inplace", [False, True])
def test_k_none(backend, inplace):
    q = torch.randn(3, 4, 5, 64).to(backend.device)
    cos, sin = kit.tables(64, backend.device)
    q_ref, _ = rotate_qk_ref(q, None, cos, sin, offset=2, layout="interleaved")
    q_out, k_out = apply_rotary(q.clone() if inplace else q, None, cos, sin, offset=2, layout="interleaved",
                                inplace=inplace, backend=backend.name)
    assert k_out is None
    kit.assert_close(q_out, q_ref, torch.float32, "q")


def test_float64_inputs_use_float64_math(backend):
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 3, 3, 16, generator=gen, dtype=torch.float64).to(backend.device)
    k = torch.randn(2, 3, 1, 16, generator=gen, dtype=torch.float64).to(backend.device)
    cos, sin = kit.tables(16, backend.device)
    q_ref, k_ref = rotate_qk_ref(q, k, cos, sin, offset=1)
    q_out, k_out = apply_rotary(q, k, cos, sin, offset=1, backend=backend.name)
    kit.assert_close(q_out, q_ref, torch.float64, "q")
    kit.assert_close(k_out, k_ref, torch.float64, "k")


def test_mixed_q_k_dtypes(backend):
    q = torch.randn(1, 4, 2, 16).to(backend.device)
    k = torch.randn(1, 4, 1, 16).to(backend.device, torch.bfloat16)
    cos, sin = kit.tables(16, backend.device)
    q_ref, k_ref = rotate_qk_ref(q, k, cos, sin)
    q_out, k_out = apply_rotary(q, k, cos, sin, backend=backend.name)
    kit.assert_close(q_out, q_ref, torch.float32, "q")
    kit.assert_close(k_out, k_ref, torch.bfloat16, "k")


def test_empty_batch_and_zero_length(backend):
    cos, sin = kit.tables(16, backend.device)
    q = torch.randn(2, 0, 3, 16).to(backend.device)
    q_out, k_out = apply_rotary(q, q[:, :, :1], cos, sin, backend=backend.name)
    assert q_out.shape == q.shape and k_out.shape == (2, 0, 1, 16)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_precision_vs_float64_up_to_1m_positions(backend, layout):
    from ropekit.core.tables import cos_sin_table

    inv = 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    cos, sin = cos_sin_table(inv, 1 << 20, device=backend.device)
    pos = torch.tensor([0, 999_999, 1_048_575, 524_287], device=backend.device)
    q = torch.randn(1, 4, 2, 8, generator=torch.Generator().manual_seed(5)).to(backend.device)
    out, _ = apply_rotary(q, None, cos, sin, positions=pos, layout=layout, backend=backend.name)
    ang = pos.double().cpu()[:, None] * inv  # exact float64 angles
    c, s = ang.cos()[:, None, :], ang.sin()[:, None, :]
    x = q.double().cpu()[0]
    x1, x2 = (x[..., :4], x[..., 4:]) if layout == "half" else (x[..., 0::2], x[..., 1::2])
    o1, o2 = x1 * c - x2 * s, x2 * c + x1 * s
    want = torch.cat((o1, o2), -1) if layout == "half" else torch.stack((o1, o2), -1).flatten(-2)
    assert (out[0].double().cpu() - want).abs().max().item() <= 1e-6 * max(1.0, x.abs().max().item())
