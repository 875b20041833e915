"""The fused backends behind :func:`ropekit.functional.apply_rotary`: argument checks, then one launch.

``rotate_triton`` and ``rotate_cpu`` take the arguments of
:func:`ropekit.core.reference.rotate_qk_ref` plus ``inplace`` and go through
:class:`ropekit.kernels.autograd.RotaryFunction`, so both are differentiable.

Value checks (positions inside the table, ``cu_seqlens`` well formed) read tensor values and so sync
with the device. They run in eager mode; while ``torch.compile`` traces or a CUDA graph captures they
are skipped, and the Triton kernel's guard turns an out-of-table token into NaN rather than an
out-of-bounds read.
"""

from __future__ import annotations

import torch

from ropekit.core.positions import check_int_offset
from ropekit.core.reference import LAYOUTS, check_qk
from ropekit.core.validation import check_choice, check_rotary_dim

__all__ = ["rotate_cpu", "rotate_triton", "triton_available"]


def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def _check_tables(cos_table: object, sin_table: object, head_dim: int) -> None:
    for name, t in (("cos_table", cos_table), ("sin_table", sin_table)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}.")
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"{name} must be float32 (or float64): a {t.dtype} table loses the angle precision "
                "RoPE needs; build it with ropekit.core.tables.cos_sin_table."
            )
    assert isinstance(cos_table, torch.Tensor) and isinstance(sin_table, torch.Tensor)
    if cos_table.shape != sin_table.shape or cos_table.dim() != 2:
        raise ValueError(
            f"cos_table and sin_table must both be (table_len, rotary_dim // 2); got "
            f"{tuple(cos_table.shape)} and {tuple(sin_table.shape)}."
        )
    if cos_table.dtype != sin_table.dtype:
        raise TypeError(f"cos_table and sin_table dtypes differ: {cos_table.dtype} and {sin_table.dtype}.")
    check_rotary_dim(2 * cos_table.shape[-1], head_dim)


def _values_checked(q: torch.Tensor) -> bool:
    """Whether value checks (host syncs) may run now."""
    if torch.compiler.is_compiling():
        return False
    return not (q.is_cuda and torch.cuda.is_current_stream_capturing())


def _check_range(arg: str, hi: torch.Tensor | int, limit: int, what: str) -> None:
    top = int(hi)
    if top >= limit:
        raise ValueError(f"{arg} reaches position {top}, but the cos/sin table has {limit} rows ({what}).")


def _positions_args(
    q: torch.Tensor, positions: torch.Tensor | None, offset: int | torch.Tensor, cu_seqlens: torch.Tensor | None,
    table_len: int,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, int]:
    """Validate the position arguments; return (positions, offsets, cu_seqlens, int offset) on q's device."""
    dev, check = q.device, _values_checked(q)
    offsets: torch.Tensor | None = None
    off = 0
    if isinstance(offset, torch.Tensor):
        offsets = offset.to(dev)
        if check:
            _check_values(offsets, "offset")
        else:
            _dtype_only(offsets, "offset")
    else:
        off = check_int_offset(offset)
    if cu_seqlens is not None:
        if positions is not None:
            raise ValueError("pass either positions or cu_seqlens, not both.")
        _dtype_only(cu_seqlens, "cu_seqlens")
        cu = cu_seqlens.to(dev)
        if cu.dim() != 1 or cu.numel() < 2:
            raise ValueError(f"cu_seqlens must be a 1-D int tensor (n_seqs + 1,), got shape {tuple(cu.shape)}.")
        n_seqs = cu.numel() - 1
        if offsets is not None and offsets.shape != (n_seqs,):
            raise ValueError(f"offset must have shape (n_seqs,)=({n_seqs},), got {tuple(offsets.shape)}.")
        if check:
            lengths = cu.diff()
            if int(cu[0]) != 0 or bool((lengths < 0).any()):
                raise ValueError("cu_seqlens must start at 0 and be non-decreasing.")
            if int(cu[-1]) != q.shape[0]:
                raise ValueError(f"cu_seqlens[-1]={int(cu[-1])} does not match the packed token count {q.shape[0]}.")
            last = lengths + (offsets if offsets is not None else off) - 1
            _check_range("cu_seqlens with offset", last.max(), table_len, "last token of the longest sequence")
        return None, offsets, cu, off
    batch, seqlen = q.shape[0], q.shape[1]
    if positions is not None:
        if offsets is not None or off != 0:
            raise ValueError("pass either positions or offset, not both.")
        if not isinstance(positions, torch.Tensor):
            raise TypeError(f"positions must be an integer torch.Tensor, got {type(positions).__name__}.")
        if positions.shape not in ((seqlen,), (batch, seqlen)):
            raise ValueError(
                f"positions must have shape (seqlen,)=({seqlen},) or (batch, seqlen)=({batch}, {seqlen}), "
                f"got {tuple(positions.shape)}."
            )
        pos = positions.to(dev)
        if check:
            _check_values(pos, "positions", limit=table_len)
        else:
            _dtype_only(pos, "positions")
        return pos, None, None, 0
    if offsets is not None:
        if offsets.shape != (batch,):
            raise ValueError(f"offset tensor must have shape (batch,)=({batch},), got {tuple(offsets.shape)}.")
        if check and seqlen:
            _check_range("offset + seqlen - 1", offsets.max() + seqlen - 1, table_len, "per-batch offset")
    elif seqlen:
        _check_range("offset + seqlen - 1", off + seqlen - 1, table_len, "contiguous positions")
    return None, offsets, None, off


def _check_values(t: torch.Tensor, arg: str, limit: int | None = None) -> None:
    """Integer dtype, >= 0 and < ``limit``; one device sync (``aminmax``) instead of two."""
    _dtype_only(t, arg)
    if t.numel() == 0:
        return
    lo, hi = (int(v) for v in torch.aminmax(t))
    if lo < 0:
        raise ValueError(f"{arg} must be >= 0, got a minimum of {lo}.")
    if limit is not None and hi >= limit:
        raise ValueError(f"{arg} must be < {limit} (the cos/sin table length), got a maximum of {hi}.")


def _dtype_only(t: torch.Tensor, arg: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{arg} must be an integer torch.Tensor, got {type(t).__name__}.")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{arg} must have an integer dtype (int32/int64), got {t.dtype}.")


def _rotate(impl: str, q, k, cos_table, sin_table, *, positions, offset, cu_seqlens, layout, inplace):  # type: ignore[no-untyped-def]
    check_choice("layout", layout, LAYOUTS)
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {type(inplace).__name__}.")
    check_qk(q, k, packed=cu_seqlens is not None)
    if k is not None and k.device != q.device:
        raise ValueError(f"q and k must be on the same device, got {q.device} and {k.device}.")
    _check_tables(cos_table, sin_table, q.shape[-1])
    pos, offsets, cu, off = _positions_args(q, positions, offset, cu_seqlens, cos_table.shape[0])
    cos = cos_table.to(q.device).contiguous()
    sin = sin_table.to(q.device).contiguous()
    interleaved = layout == "interleaved"
    if k is not None and k.dtype != q.dtype:
        # One launch assumes one dtype; mixed q/k dtypes are rare, so rotate them separately.
        q2, _ = _rotate(impl, q, None, cos, sin, positions=positions, offset=offset, cu_seqlens=cu_seqlens,
                        layout=layout, inplace=inplace)
        k2, _ = _rotate(impl, k, None, cos, sin, positions=positions, offset=offset, cu_seqlens=cu_seqlens,
                        layout=layout, inplace=inplace)
        return q2, k2
    from ropekit.kernels.autograd import RotaryFunction, rotate

    if not (torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad))):
        # No graph to record: skip autograd.Function, whose bookkeeping costs more than a decode-sized
        # rotation (~25 µs per call on a 2-vCPU VM).
        return rotate(q, k, cos, sin, pos, offsets, cu, off, interleaved, False, impl, inplace)
    return RotaryFunction.apply(q, k, cos, sin, pos, offsets, cu, off, interleaved, inplace, impl)


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
