"""Backend registration and selection, torch.compile, and the CPU path's memory behaviour."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ropekit.core.reference import rotate_qk_ref
from ropekit.functional import BACKENDS, apply_rotary, pick_backend
from tests.kernels import kit


def test_backends_registered_and_auto_picks_by_device():
    assert {"reference", "triton", "cpu"} <= set(BACKENDS)
    assert pick_backend(torch.empty(1, 1, 1, 2), "auto") == "cpu"
    assert pick_backend(torch.empty(1, 1, 1, 2, device="meta"), "auto") == "reference"
    assert pick_backend(torch.empty(1, 1, 1, 2), "triton") == "triton"


def test_import_ropekit_does_not_import_triton_or_kernels():
    code = (
        "import sys, ropekit, ropekit.functional; "
        "bad = [m for m in sys.modules if m == 'triton' or m.startswith(('triton.', 'ropekit.kernels'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_auto_on_cpu_runs_the_cpu_backend(monkeypatch):
    from ropekit.kernels import dispatch

    calls = []
    real = dispatch.BACKENDS["cpu"]
    monkeypatch.setitem(dispatch.BACKENDS, "cpu", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    q = torch.randn(1, 3, 2, 16)
    cos, sin = kit.tables(16)
    q_out, _ = apply_rotary(q, None, cos, sin)
    assert calls == [1]
    kit.assert_close(q_out, rotate_qk_ref(q, None, cos, sin)[0], torch.float32, "q")


@pytest.mark.parametrize("inplace", [False, True])
def test_torch_compile_fullgraph_forward_backward(backend, inplace):
    torch._dynamo.reset()
    cos, sin = kit.tables(32, backend.device)
    pos = torch.tensor([[5, 0, 63], [1, 2, 3]], device=backend.device)

    def f(x, y):
        q, k = x * 1.5, y * 0.5
        return apply_rotary(q, k, cos, sin, positions=pos, inplace=inplace, backend=backend.name)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 3, 48, generator=gen).to(backend.device).requires_grad_()
    y = torch.randn(2, 3, 1, 48, generator=gen).to(backend.device).requires_grad_()
    q_out, k_out = torch.compile(f, fullgraph=True, backend="aot_eager")(x, y)
    (q_out.square().sum() + k_out.sum()).backward()
    xr, yr = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    q_ref, k_ref = rotate_qk_ref(xr * 1.5, yr * 0.5, cos, sin, positions=pos)
    (q_ref.square().sum() + k_ref.sum()).backward()
    kit.assert_close(q_out.detach(), q_ref.detach(), torch.float32, "q")
    kit.assert_close(x.grad, xr.grad, torch.float32, "x grad")
    kit.assert_close(y.grad, yr.grad, torch.float32, "y grad")


def test_custom_op_opcheck():
    from ropekit.kernels import autograd  # noqa: F401  (registers the ops)

    cos, sin = kit.tables(16)
    q, k = torch.randn(2, 3, 3, 16), torch.randn(2, 3, 1, 16)
    args = (cos, sin, None, None, None, 1, False, False, "cpu")
    torch.library.opcheck(torch.ops.ropekit.rotary.default, (q, k, *args))
    torch.library.opcheck(torch.ops.ropekit.rotary_.default, (q.clone(), k.clone(), *args))


def test_cpu_inplace_allocates_no_large_buffer():
    """In place, the CPU path allocates chunk-sized buffers only: nothing near the 32 MiB of q."""
    from torch.profiler import ProfilerActivity, profile

    q, k = torch.zeros(1, 2048, 32, 128), torch.zeros(1, 2048, 8, 128)
    cos, sin = kit.tables(128, length=2048)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        apply_rotary(q, k, cos, sin, inplace=True, backend="cpu")
        apply_rotary(q, k, cos, sin, positions=torch.arange(2047, -1, -1), inplace=True, backend="cpu")
    biggest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < biggest <= 4 * 2**20, biggest
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        apply_rotary(q, k, cos, sin, backend="cpu")  # out of place: the outputs are the big allocations
    assert max(e.cpu_memory_usage for e in prof.events()) >= 8 * 2**20
