"""The ``backend`` fixture of the fused-backend tests (helpers are in ``tests/kernels/kit.py``).

The Triton kernel runs on CPU under the Triton interpreter. Triton reads ``TRITON_INTERPRET`` when
``@triton.jit`` decorates a kernel, i.e. when :mod:`ropekit.kernels.triton_rope` is first imported,
so the repository's root ``conftest.py`` sets it before anything imports triton, and only when no
GPU is present. ``ropekit.kernels.triton_rope.INTERPRETED`` tells the tests whether it took effect.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch


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
