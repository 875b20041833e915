"""Functional entry point: rotate q and k from a cos/sin table, on the backend you pick.

Backends (chosen at call time, never at import):

- ``"auto"``: ``"triton"`` for CUDA tensors (when triton is installed), ``"cpu"`` for CPU tensors,
  ``"reference"`` otherwise.
- ``"reference"``: :func:`ropekit.core.reference.rotate_qk_ref`, the oracle.
- ``"triton"``: the fused Triton kernel (:mod:`ropekit.kernels.triton_rope`), CUDA tensors.
- ``"cpu"``: the chunked CPU path (:mod:`ropekit.kernels.cpu`), CPU tensors.

The fused backends want float32 (or float64) tables and are differentiable; ``inplace=True``
overwrites q and k (a view of a fused qkv tensor included).

The fused backends are registered as thin wrappers that import :mod:`ropekit.kernels.dispatch` on
their first call, so ``import ropekit`` never imports triton. Position arguments are checked in one
place, :func:`ropekit.core.positions.token_positions`, whichever backend runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from ropekit.core.reference import Layout, rotate_qk_ref
from ropekit.core.validation import check_choice

__all__ = ["BACKENDS", "apply_rotary", "pick_backend"]

RotateFn = Callable[..., tuple[torch.Tensor, "torch.Tensor | None"]]

#: name -> function with the signature of :func:`rotate_qk_ref` plus ``inplace``.
BACKENDS: dict[str, RotateFn] = {}


def _reference(q, k, cos_table, sin_table, *, inplace: bool = False, **kw):  # type: ignore[no-untyped-def]
    q2, k2 = rotate_qk_ref(q, k, cos_table, sin_table, **kw)
    if not inplace:
        return q2, k2
    q.copy_(q2)
    if k is not None and k2 is not None:
        k.copy_(k2)
    return q, k


BACKENDS["reference"] = _reference


def _fused(name: str) -> RotateFn:
    # Defers `import ropekit.kernels.dispatch` (and with it torch.library registration, triton) to the first
    # call; dispatch.BACKENDS is the one registry of the fused backends.
    def call(*args, **kwargs):  # type: ignore[no-untyped-def]
        from ropekit.kernels.dispatch import BACKENDS as FUSED

        return FUSED[name](*args, **kwargs)

    call.__name__ = f"rotate_{name}"
    return call


BACKENDS["triton"] = _fused("triton")
BACKENDS["cpu"] = _fused("cpu")


@functools.cache
def _triton_importable() -> bool:
    # Checked on the first CUDA call (not at import), then cached.
    from ropekit.kernels.dispatch import triton_available

    return triton_available()


def pick_backend(q: torch.Tensor, backend: str = "auto") -> str:
    """Resolve ``backend="auto"`` for ``q``'s device; validate explicit names."""
    check_choice("backend", backend, ["auto", *BACKENDS])
    if backend != "auto":
        return backend
    if q.device.type == "cuda" and "triton" in BACKENDS and _triton_importable():
        return "triton"
    if q.device.type == "cpu" and "cpu" in BACKENDS:
        return "cpu"
    return "reference"


def apply_rotary(
    q: torch.Tensor,
    k: torch.Tensor | None,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
    *,
    positions: torch.Tensor | None = None,
    offset: int | torch.Tensor = 0,
    cu_seqlens: torch.Tensor | None = None,
    layout: Layout = "half",
    inplace: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotate ``q`` ``(batch, seqlen, q_heads, head_dim)`` and ``k`` ``(batch, seqlen, kv_heads, head_dim)``.

    ``cos_table``/``sin_table``: ``(table_len, rotary_dim // 2)`` float32 (see
    :func:`ropekit.core.tables.cos_sin_table`). Positions: ``positions`` (``(seqlen,)`` or
    ``(batch, seqlen)`` ints) or contiguous from ``offset``; packed ``(total, heads, head_dim)``
    inputs take ``cu_seqlens``. ``layout``: ``"half"`` (NeoX/HF, i <-> i + d/2) or
    ``"interleaved"`` (GPT-J, 2i <-> 2i+1).

    >>> import torch, ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=8)
    >>> cos, sin = cfg.cos_sin_table(16)
    >>> q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 4, 1, 8)
    >>> q2, k2 = apply_rotary(q, k, cos, sin, offset=2, backend="reference")
    >>> q2.shape
    torch.Size([1, 4, 3, 8])
    """
    name = pick_backend(q, backend)
    return BACKENDS[name](
        q, k, cos_table, sin_table,
        positions=positions, offset=offset, cu_seqlens=cu_seqlens, layout=layout, inplace=inplace,
    )
