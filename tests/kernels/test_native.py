"""The native CPU kernel itself: that it is built, its fp16/bf16 rounding (bit for bit against torch's
own conversions), NaN/inf, bounds, threads, and the fallback for layouts it does not take.

Its numerics against the reference over the full grid run in test_grid.py (backend ids "cpu" and
"cpu-threads").
"""

from __future__ import annotations

import shutil
import sysconfig

import pytest
import torch

from ropekit.core.reference import rotate_qk_ref
from ropekit.functional import apply_rotary
from ropekit.kernels import cpu, cpu_native
from tests.kernels import kit


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) or shutil.which("cc")


def test_built_when_a_compiler_is_present():
    if _compiler() is None:
        assert not cpu_native.available(), "no compiler here, yet an extension was found"
        return
    assert cpu_native.available(), "a C compiler exists but ropekit.kernels._rope_cpu was not built"
    assert all(cpu_native.available(d) for d in (torch.float32, torch.bfloat16, torch.float16))
    assert not cpu_native.available(torch.float64)


native = pytest.mark.skipif(not cpu_native.available(), reason="native kernel not built (see the test above)")


def _native(x, o, cos, sin, positions):
    """The kernel on (1, rows, heads, head_dim) tensors, "half" pairs, forward."""
    assert cpu_native.launch(x, None, o, None, cos, sin, positions=positions, offsets=None, cu_seqlens=None,
                             offset=0, interleaved=False, conj=False)


def _identity_rows(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rotate ``x = (1, 0)`` pairs by tables whose cos column holds ``values`` (sin 0): the output's
    first channel is ``1 * v - 0 * 0 = v`` in fp32, rounded once to ``dtype`` by the kernel."""
    n = values.numel()
    x = torch.zeros(1, n, 1, 2, dtype=dtype)
    x[..., 0] = 1
    o = torch.empty_like(x)
    cos = values.float().reshape(n, 1).contiguous()
    _native(x, o, cos, torch.zeros_like(cos), torch.arange(n))
    return o[0, :, 0, 0]


def _random_fp32(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    bits = torch.randint(-(2**31), 2**31 - 1, (n,), generator=gen, dtype=torch.int64).to(torch.int32)
    edges = torch.tensor([0.0, -0.0, 65504.0, 65519.99, 65520.0, 2.98e-8, 2.99e-8, 5.96e-8, 6.1e-5, 6.097e-5,
                          3.0e38, 1e-45, float("inf"), -float("inf"), 1.00390625, 1.01171875, -3.3895e38])
    v = torch.cat((bits.view(torch.float32), edges))
    return v[~v.isnan()]


@native
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_rounding_to_low_precision_matches_torch_bit_for_bit(dtype):
    v = _random_fp32(400_000, seed=0)
    got = _identity_rows(v, dtype)
    want = v.to(dtype)
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))


@native
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_every_low_precision_value_widens_exactly(dtype):
    # All 65536 bit patterns as inputs, rotated by 0 (cos 1, sin 0): finite values come back unchanged.
    allbits = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(dtype)
    x = torch.stack((allbits, torch.zeros_like(allbits)), -1).reshape(1, -1, 1, 2)
    o = torch.empty_like(x)
    _native(x, o, torch.ones(1, 1), torch.zeros(1, 1), torch.zeros(x.shape[1], dtype=torch.int64))
    got = o[0, :, 0, 0]
    finite = allbits.isfinite()
    assert torch.equal(got[finite].view(torch.int16), allbits[finite].view(torch.int16))
    assert torch.equal(got.isnan(), allbits.isnan())
    inf = allbits.isinf()
    assert torch.equal(got[inf], allbits[inf])


@native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_nan_and_inf_propagate_like_the_reference(dtype, layout):
    q = torch.randn(2, 3, 2, 16).to(dtype)
    q[0, 1, 0, 3] = float("nan")
    q[1, 2, 1, 0] = float("inf")
    q[1, 0, 0, 9] = -float("inf")
    cos, sin = kit.tables(16)
    got, _ = apply_rotary(q, None, cos, sin, offset=1, layout=layout, backend="cpu")
    want, _ = rotate_qk_ref(q, None, cos, sin, offset=1, layout=layout)
    assert torch.equal(got.isnan(), want.isnan())
    fin = want.isfinite()
    assert torch.equal(got.isinf(), want.isinf()) and torch.equal(got[want.isinf()], want[want.isinf()])
    kit.assert_close(got[fin], want[fin], dtype, "finite")


def _launch(q, cos, sin, **kw):
    # Straight to the launcher: dispatch's own checks are what torch.compile skips.
    args = dict(positions=None, offsets=None, cu_seqlens=None, offset=0, interleaved=False, conj=False)
    args.update(kw)
    cpu.launch(q, None, q, None, cos, sin, **args)


@native
@pytest.mark.parametrize("threads", [1, 2])
def test_out_of_table_positions_raise_before_any_write(monkeypatch, threads):
    monkeypatch.setattr(cpu_native, "PARALLEL_MIN_ELEMS", 1)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cos, sin = kit.tables(16)
        q = torch.randn(1, 8, 2, 16)
        before = q.clone()
        pos = torch.tensor([0, 1, 2, 3, 4, 5, 6, kit.TABLE_LEN])
        with pytest.raises(ValueError, match="cos/sin table"):
            _launch(q, cos, sin, positions=pos)
        with pytest.raises(ValueError, match="cos/sin table"):
            _launch(q, cos, sin, positions=pos - kit.TABLE_LEN)  # negative
        with pytest.raises(ValueError, match="cos/sin table"):
            _launch(q, cos, sin, offset=kit.TABLE_LEN - 7)  # the last row falls off
        with pytest.raises(ValueError, match="cos/sin table"):
            _launch(q, cos, sin, offsets=torch.tensor([kit.TABLE_LEN - 7]))  # per-batch offset
        packed = q[0]
        for cu in ([0, 5, 3, 8], [1, 3, 8], [0, 3, 9]):  # decreasing, not from 0, not ending at the total
            with pytest.raises(ValueError, match="cu_seqlens"):
                _launch(packed, cos, sin, cu_seqlens=torch.tensor(cu))
        assert torch.equal(q, before), "a rejected call must leave q untouched"
    finally:
        torch.set_num_threads(saved)


@native
def test_default_thread_split_on_a_large_input(monkeypatch):
    # Large enough for the real (unpatched) threshold, with 2 threads.
    pools = []
    real_pool = cpu_native._pool
    monkeypatch.setattr(cpu_native, "_pool", lambda n: pools.append(n) or real_pool(n))
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cos, sin = kit.tables(64, length=2048)
        q = torch.randn(1, 2048, 6, 64)
        k = torch.randn(1, 2048, 2, 64)
        assert (q.numel() + k.numel()) >= cpu_native.PARALLEL_MIN_ELEMS
        got_q, got_k = apply_rotary(q, k, cos, sin, backend="cpu")
        want_q, want_k = rotate_qk_ref(q, k, cos, sin)
        kit.assert_close(got_q, want_q, torch.float32, "q")
        kit.assert_close(got_k, want_k, torch.float32, "k")
        assert pools == [1], "the call was not split across 2 threads"
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("inplace", [False, True])
def test_strided_head_dim_takes_the_torch_path_and_stays_exact(inplace):
    # head_dim not contiguous: the kernel declines it (launch returns False) and the torch path runs.
    base = torch.randn(2, 5, 3, 16).transpose(-1, -2).contiguous().transpose(-1, -2)
    assert base.stride(-1) != 1
    cos, sin = kit.tables(16)
    assert not cpu_native.launch(base, None, base.clone(), None, cos, sin, positions=None, offsets=None,
                                 cu_seqlens=None, offset=0, interleaved=False, conj=False)
    want, _ = rotate_qk_ref(base, None, cos, sin, offset=4)
    got, _ = apply_rotary(base, None, cos, sin, offset=4, inplace=inplace, backend="cpu")
    kit.assert_close(got, want, torch.float32, "q")


def test_available_is_false_for_unsupported_dtypes():
    assert not cpu_native.available(torch.float64)
    assert not cpu_native.available(torch.int32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_float64_tables_take_the_torch_path_and_stay_exact(dtype):
    # The kernel reads fp32 tables; a float64 one goes to the torch path, which rounds only the rows it uses.
    cos, sin = (t.double() for t in kit.tables(16))
    q = torch.randn(2, 5, 3, 16).to(dtype)
    assert not cpu_native.launch(q, None, q.clone(), None, cos, sin, positions=None, offsets=None,
                                 cu_seqlens=None, offset=0, interleaved=False, conj=False)
    want, _ = rotate_qk_ref(q, None, cos, sin, offset=3)
    got, _ = apply_rotary(q, None, cos, sin, offset=3, backend="cpu")
    kit.assert_close(got, want, dtype, "q")
