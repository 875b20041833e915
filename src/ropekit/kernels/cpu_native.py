"""Launcher for the native CPU kernel (``_rope_cpu.c``): one pass over q and k, at the copy floor.

The extension is built at install time when a C compiler is present (``setup.py``, optional); when it
is missing, or for float64 inputs or tables or last-dim-strided tensors, :mod:`ropekit.kernels.cpu` uses its pure-torch
chunked path instead. ``available()`` says which one runs.

Work is split by rows (tokens) across ``torch.get_num_threads()`` threads: the extension releases
the GIL, so Python threads run it in parallel. Small calls stay on the calling thread, where a
thread hand-off would cost more than the rotation (timings: ``benchmarks/results/``).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import torch

__all__ = ["PARALLEL_MIN_ELEMS", "available", "launch"]

#: q+k elements below which one thread does the whole call (a split decode batch measured slower).
PARALLEL_MIN_ELEMS = 1 << 20

_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


@functools.cache
def _ext() -> ModuleType | None:
    try:
        from ropekit.kernels import _rope_cpu
    except ImportError:
        return None
    return _rope_cpu


def available(dtype: torch.dtype | None = None) -> bool:
    """Whether the native kernel is built (and, given ``dtype``, handles that dtype).

    >>> import torch
    >>> available(torch.float64)  # float64 always takes the torch path
    False
    """
    ext = _ext()
    if ext is None:
        return False
    if dtype is None:
        return True
    return dtype in _CODES


def _desc(x: torch.Tensor | None, o: torch.Tensor | None, packed: bool, rotary_dim: int) -> tuple | None:
    """The kernel's view of one tensor: (x_ptr, o_ptr, strides (batch, seq, head) of x then o, heads,
    copy_tail), or None when head_dim is not contiguous (the torch path takes those)."""
    if x is None or o is None:
        return None
    xs, os_ = x.stride(), o.stride()
    if xs[-1] != 1 or os_[-1] != 1:
        return None
    if packed:  # (total, heads, head_dim): one batch row of `total` tokens
        xs, os_ = (0, *xs), (0, *os_)
    xp, op = x.data_ptr(), o.data_ptr()
    return (xp, op, xs[0], xs[1], xs[2], os_[0], os_[1], os_[2], x.shape[-2], op != xp and rotary_dim < x.shape[-1])


def _i64(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.int64 and t.is_contiguous() else t.to(torch.int64).contiguous()


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    # Created on the first parallel call (never at import) and kept for the process's life.
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ropekit-cpu")


def launch(
    q: torch.Tensor,
    k: torch.Tensor | None,
    q_out: torch.Tensor,
    k_out: torch.Tensor | None,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
    *,
    positions: torch.Tensor | None,
    offsets: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    offset: int,
    interleaved: bool,
    conj: bool,
) -> bool:
    """Rotate like :func:`ropekit.kernels.cpu.launch` and return True, or return False (nothing done)
    when the kernel does not take these tensors: not built, float64 inputs or tables, or a strided
    head_dim.

    ``q`` ``(batch, seqlen, heads, head_dim)`` or packed ``(total, heads, head_dim)`` with
    ``cu_seqlens``; the outputs may alias the inputs (in place). Inputs are validated by
    :mod:`ropekit.kernels.dispatch`; positions are checked here again, before anything is written.
    """
    if not available(q.dtype) or (k is not None and k.dtype != q.dtype) or cos_table.dtype != torch.float32:
        # A float64 table would have to be rounded whole on every call; the torch path rounds only
        # the rows a chunk uses.
        return False
    ext = _ext()
    assert ext is not None
    packed = cu_seqlens is not None
    half = cos_table.shape[1]
    descs = [_desc(x, o, packed, 2 * half) for x, o in ((q, q_out), (k, k_out)) if x is not None and x.shape[-2]]
    if any(d is None for d in descs):
        return False
    batch, seqlen = (1, q.shape[0]) if packed else (q.shape[0], q.shape[1])
    rows = batch * seqlen
    if not descs or rows == 0:
        return True
    cos_table, sin_table = cos_table.contiguous(), sin_table.contiguous()
    offs = _i64(offsets) if offsets is not None else None
    pos = cu = None
    pos_sb = pos_ss = n_seqs = 0
    if packed:
        mode, cu = 2, _i64(cu_seqlens)
        n_seqs = cu.numel() - 1
    elif positions is not None:
        mode, pos = 1, positions.to(torch.int64)  # strided is fine: the kernel takes its strides
        pos_sb, pos_ss = (0, pos.stride(0)) if pos.dim() == 1 else pos.stride()
    else:
        mode = 0
    common = (
        tuple(descs), _CODES[q.dtype], q.shape[-1], half, cos_table.data_ptr(), sin_table.data_ptr(),
        cos_table.shape[0], interleaved, conj, mode, seqlen, offset,
        offs.data_ptr() if offs is not None else 0, pos.data_ptr() if pos is not None else 0, pos_sb, pos_ss,
        cu.data_ptr() if cu is not None else 0, n_seqs,
    )
    threads = min(torch.get_num_threads(), rows)
    work = rows * sum(d[8] for d in descs) * q.shape[-1]
    if threads <= 1 or work < PARALLEL_MIN_ELEMS:
        ext.rotate(*common, 0, rows, True)
        return True
    # Each thread checks only its own rows: check them all first, so no thread writes before a failure.
    ext.rotate(*common, 0, rows, False)
    bounds = [rows * i // threads for i in range(threads + 1)]
    futures = [_pool(threads - 1).submit(ext.rotate, *common, bounds[i], bounds[i + 1], True)
               for i in range(1, threads)]
    ext.rotate(*common, bounds[0], bounds[1], True)
    for f in futures:
        f.result()
    return True
