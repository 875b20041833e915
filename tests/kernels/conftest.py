"""Shared helpers for the fused-backend tests.

The Triton kernel runs on CPU under the Triton interpreter. Triton reads ``TRITON_INTERPRET`` when
``@triton.jit`` decorates a kernel, i.e. when :mod:`ropekit.kernels.triton_rope` is first imported,
so the repository's root ``conftest.py`` sets it before anything imports triton, and only when no
GPU is present. ``ropekit.kernels.triton_rope.INTERPRETED`` tells the tests whether it took effect.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ropekit.core.tables import cos_sin_table

TABLE_LEN = 64


def _device_for(name: str) -> str:
    if name == "cpu" or torch.cuda.is_available():
        return "cpu" if name == "cpu" else "cuda"
    from ropekit.kernels import triton_rope

    if not triton_rope.INTERPRETED:
        pytest.fail("no GPU and the Triton kernel was imported without TRITON_INTERPRET=1; "
                    "run `TRITON_INTERPRET=1 python -m pytest tests/kernels`.")
    return "cpu"


#: fixture id -> backend name: "cpu" is the native kernel, "cpu-threads" the same split across threads,
#: "cpu-torch" the pure-torch path that runs where the native kernel was not built.
_BACKENDS = {"cpu": "cpu", "cpu-threads": "cpu", "cpu-torch": "cpu", "triton": "triton"}


@pytest.fixture(params=list(_BACKENDS))
def backend(request, monkeypatch) -> SimpleNamespace:
    """A fused backend with small tiles/chunks, so small test shapes still span several of them."""
    name = _BACKENDS[request.param]
    device = _device_for(name)
    if request.param in ("cpu", "cpu-threads"):
        from ropekit.kernels import cpu_native

        if not cpu_native.available():
            # tests/kernels/test_native.py fails when a compiler exists but the kernel was not built.
            pytest.skip("native CPU kernel not built (no C compiler at install)")
        if request.param == "cpu-threads":
            monkeypatch.setattr(cpu_native, "PARALLEL_MIN_ELEMS", 1)
            threads = torch.get_num_threads()
            torch.set_num_threads(3)  # more threads than cores: uneven row splits, still exact
            request.addfinalizer(lambda: torch.set_num_threads(threads))
    elif request.param == "cpu-torch":
        from ropekit.kernels import cpu, cpu_native

        monkeypatch.setattr(cpu_native, "available", lambda dtype=None: False)
        monkeypatch.setattr(cpu, "CHUNK_ELEMS", 700)
    else:
        from ropekit.kernels import triton_rope

        monkeypatch.setattr(triton_rope, "_TILE_ELEMS", 512)
    return SimpleNamespace(name=name, device=device, impl=request.param)


def tables(rotary_dim: int, device: str = "cpu", length: int = TABLE_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 tables with a non-trivial attention factor (it must multiply cos and sin alike)."""
    inv = 10000.0 ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    return cos_sin_table(inv, length, attention_factor=1.1, device=device)


def position_kwargs(mode: str, batch: int, seqlen: int, device: str, gen: torch.Generator) -> dict:
    if mode == "default":
        return {}
    if mode == "offset":
        return {"offset": TABLE_LEN - seqlen}
    if mode == "offset_tensor":
        return {"offset": torch.randint(0, TABLE_LEN - seqlen + 1, (batch,), generator=gen).to(device)}
    if mode == "positions_1d":
        return {"positions": torch.randint(0, TABLE_LEN, (seqlen,), generator=gen).to(device, torch.int32)}
    if mode == "positions_2d":
        return {"positions": torch.randint(0, TABLE_LEN, (batch, seqlen), generator=gen).to(device)}
    raise ValueError(mode)


def varlen_kwargs(total: int, device: str) -> dict:
    # Three sequences, one of them empty, plus a per-sequence offset (e.g. cached tokens).
    a = total // 3
    cu = torch.tensor([0, a, a, total], dtype=torch.int32, device=device)
    return {"cu_seqlens": cu, "offset": torch.tensor([5, 0, 9], device=device)}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    """At most one rounding step of ``dtype`` apart, plus a few fp32 ulps of the tensor's scale.

    The fused paths round once from fp32 like the reference, but their fp32 values may differ in
    the last bit (FMA, complex multiply), which can flip one rounding of the output dtype.
    """
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    a, e = actual.double().cpu(), expected.double().cpu()
    scale = max(1.0, e.abs().max().item())
    tol = torch.finfo(dtype).eps * e.abs() + 8 * torch.finfo(torch.float32).eps * scale
    err = (a - e).abs()
    assert bool((err <= tol).all()), f"{what}: max error {err.max().item():.3g} (dtype {dtype})"


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (conftest is not importable under --import-mode=importlib)."""
    return SimpleNamespace(
        TABLE_LEN=TABLE_LEN, tables=tables, position_kwargs=position_kwargs, varlen_kwargs=varlen_kwargs,
        assert_close=assert_close,
    )
