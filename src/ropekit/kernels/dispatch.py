"""The fused backends behind :func:`ropekit.functional.apply_rotary`: argument checks, then one launch.

Position arguments are checked by :func:`ropekit.core.positions.token_positions` (the same function the
reference uses); this module adds the fused-only rules (float32/64 tables, q and k on one device).

``rotate_triton`` and ``rotate_cpu`` (registered in :data:`BACKENDS`) take the arguments of
:func:`ropekit.core.reference.rotate_qk_ref` plus ``inplace`` and call
:func:`ropekit.kernels.autograd.rotary` with keyword arguments, so both are differentiable.

Value checks (positions inside the table, ``cu_seqlens`` well formed) read tensor values and so sync
with the device. They run in eager mode; while ``torch.compile`` traces or a CUDA graph captures they
are skipped, and the Triton kernel's guard turns an out-of-table token into NaN rather than an
out-of-bounds read.
"""

from __future__ import annotations

import torch

from ropekit.core.positions import token_positions
from ropekit.core.reference import LAYOUTS, check_qk, check_tables
from ropekit.core.validation import check_choice

__all__ = ["BACKENDS", "rotate_cpu", "rotate_triton", "triton_available"]


def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def _values_checked(q: torch.Tensor) -> bool:
    """Whether value checks (host syncs) may run now."""
    if torch.compiler.is_compiling():
        return False
    return not (q.is_cuda and torch.cuda.is_current_stream_capturing())


def _rotate(impl: str, q, k, cos_table, sin_table, *, positions, offset, cu_seqlens, layout, inplace):  # type: ignore[no-untyped-def]
    check_choice("layout", layout, LAYOUTS)
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {type(inplace).__name__}.")
    check_qk(q, k, packed=cu_seqlens is not None)
    if k is not None and k.device != q.device:
        raise ValueError(f"q and k must be on the same device, got {q.device} and {k.device}.")
    check_tables(cos_table, sin_table, q.shape[-1], float_only=True)
    where = token_positions(q.shape, positions=positions, offset=offset, cu_seqlens=cu_seqlens, device=q.device,
                            read_values=_values_checked(q), table_len=cos_table.shape[0])
    cos = cos_table.to(q.device).contiguous()
    sin = sin_table.to(q.device).contiguous()
    if k is not None and k.dtype != q.dtype:
        # One launch assumes one dtype; mixed q/k dtypes are rare, so rotate them separately.
        q2, _ = _rotate(impl, q, None, cos, sin, positions=positions, offset=offset, cu_seqlens=cu_seqlens,
                        layout=layout, inplace=inplace)
        k2, _ = _rotate(impl, k, None, cos, sin, positions=positions, offset=offset, cu_seqlens=cu_seqlens,
                        layout=layout, inplace=inplace)
        return q2, k2
    from ropekit.kernels.autograd import rotary

    return rotary(q, k, cos, sin, positions=where.positions, offsets=where.offsets, cu_seqlens=where.cu_seqlens,
                  offset=where.offset, interleaved=layout == "interleaved", impl=impl, inplace=inplace)


def rotate_triton(q, k, cos_table, sin_table, *, positions=None, offset=0, cu_seqlens=None,  # type: ignore[no-untyped-def]
                  layout="half", inplace=False):
    """Fused Triton rotation of q and k in one launch (CUDA tensors; CPU under ``TRITON_INTERPRET=1``)."""
    if not triton_available():
        raise ImportError("backend='triton' needs the 'triton' package (pip install triton).")
    from ropekit.kernels import triton_rope

    interpreted_cpu = isinstance(q, torch.Tensor) and q.device.type == "cpu" and triton_rope.INTERPRETED
    if isinstance(q, torch.Tensor) and q.device.type != "cuda" and not interpreted_cpu:
        raise ValueError(
            f"backend='triton' needs CUDA tensors, got q on {q.device} (CPU runs only under the Triton "
            "interpreter: set TRITON_INTERPRET=1 before triton is imported); use backend='cpu' or 'auto'."
        )
    return _rotate("triton", q, k, cos_table, sin_table, positions=positions, offset=offset,
                   cu_seqlens=cu_seqlens, layout=layout, inplace=inplace)


def rotate_cpu(q, k, cos_table, sin_table, *, positions=None, offset=0, cu_seqlens=None,  # type: ignore[no-untyped-def]
               layout="half", inplace=False):
    """Chunked CPU rotation (see :mod:`ropekit.kernels.cpu`); q and k must be CPU tensors.

    >>> import torch
    >>> from ropekit.core.tables import cos_sin_table
    >>> cos, sin = cos_sin_table(10000.0 ** -torch.arange(0, 1, 0.25, dtype=torch.float64), 16)
    >>> q, k = torch.randn(2, 4, 3, 8), torch.randn(2, 4, 1, 8)
    >>> q2, k2 = rotate_cpu(q, k, cos, sin, offset=torch.tensor([0, 12]), layout="interleaved")
    >>> q2.shape, k2.shape
    (torch.Size([2, 4, 3, 8]), torch.Size([2, 4, 1, 8]))
    """
    if isinstance(q, torch.Tensor) and q.device.type != "cpu":
        raise ValueError(f"backend='cpu' needs CPU tensors, got q on {q.device}; use backend='auto'.")
    return _rotate("cpu", q, k, cos_table, sin_table, positions=positions, offset=offset,
                   cu_seqlens=cu_seqlens, layout=layout, inplace=inplace)


#: the fused backends by name; :mod:`ropekit.functional` imports this module (and so triton) only on first use.
BACKENDS = {"triton": rotate_triton, "cpu": rotate_cpu}
