"""Every fused backend against the reference, forward and backward, over the parameter grid."""

from __future__ import annotations

import pytest
import torch

from ropekit.core.reference import rotate_qk_ref
from ropekit.functional import apply_rotary
from tests.kernels import kit

#: (batch, seqlen, q_heads, kv_heads, head_dim, rotary_dim): odd GQA counts, partial rotary, every head_dim.
CASES = {
    "d64": (2, 6, 4, 2, 64, 64),
    "d80-partial-7/3": (2, 5, 7, 3, 80, 48),
    "d128-3/1": (1, 7, 3, 1, 128, 128),
    "d256-partial": (2, 3, 2, 1, 256, 96),
}
POS_MODES = ("default", "offset", "offset_tensor", "positions_1d", "positions_2d", "varlen")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _inputs(case, mode, dtype, device, kit, seed=0):
    batch, seqlen, hq, hkv, d, rd = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    q = (torch.randn(batch, seqlen, hq, d, generator=gen) * 2).to(device, dtype)
    k = (torch.randn(batch, seqlen, hkv, d, generator=gen) * 2).to(device, dtype)
    if mode == "varlen":
        q, k = q.flatten(0, 1), k.flatten(0, 1)
        kw = kit.varlen_kwargs(q.shape[0], device)
    else:
        kw = kit.position_kwargs(mode, batch, seqlen, device, gen)
    cos, sin = kit.tables(rd, device)
    return q, k, cos, sin, kw, gen


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: str(t).split(".")[-1])
@pytest.mark.parametrize("mode", POS_MODES)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_matches_reference_forward_and_backward(backend, layout, case, mode, dtype):
    q, k, cos, sin, kw, gen = _inputs(case, mode, dtype, backend.device, kit)
    gq = torch.randn(q.shape, generator=gen).to(q)
    gk = torch.randn(k.shape, generator=gen).to(k)

    qa, ka = q.clone().requires_grad_(), k.clone().requires_grad_()
    q_out, k_out = apply_rotary(qa, ka, cos, sin, layout=layout, backend=backend.name, **kw)
    torch.autograd.backward((q_out, k_out), (gq, gk))

    qr, kr = q.clone().requires_grad_(), k.clone().requires_grad_()
    q_ref, k_ref = rotate_qk_ref(qr, kr, cos, sin, layout=layout, **kw)
    torch.autograd.backward((q_ref, k_ref), (gq, gk))

    kit.assert_close(q_out, q_ref, dtype, "q forward")
    kit.assert_close(k_out, k_ref, dtype, "k forward")
    kit.assert_close(qa.grad, qr.grad, dtype, "q backward")
    kit.assert_close(ka.grad, kr.grad, dtype, "k backward")
    rd = 2 * cos.shape[-1]
    if rd < q.shape[-1]:  # partial rotary: the tail passes through bit for bit
        assert torch.equal(q_out[..., rd:], q[..., rd:])
        assert torch.equal(qa.grad[..., rd:], gq[..., rd:])
