"""Launcher for the native CPU kernel (``_rope_cpu.c``): one pass over q and k, at the copy floor.

The extension is built at install time when a C compiler is present (``setup.py``, optional); when it
is missing, or for float64 or last-dim-strided tensors, :mod:`ropekit.kernels.cpu` uses its pure-torch
chunked path instead. ``available()`` says which one runs.

Work is split by rows (tokens) across ``torch.get_num_threads()`` threads: the extension releases
the GIL, so Python threads run it in parallel. Small calls stay on the calling thread, where a
thread hand-off (~tens of µs) would cost more than the rotation.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import torch

__all__ = ["PARALLEL_MIN_ELEMS", "available", "rotate_rows", "supports"]

#: q+k elements below which one thread does the whole call.
PARALLEL_MIN_ELEMS = 1 << 18

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


def supports(x: torch.Tensor, o: torch.Tensor) -> bool:
    """Whether ``x`` and ``o`` ``(rows, heads, head_dim)`` can go to the kernel: same CPU dtype and
    shape, head_dim contiguous (rows and heads may have any strides, e.g. views of a fused qkv)."""
    return (
        available(x.dtype) and x.dtype == o.dtype and x.device.type == "cpu" and o.device.type == "cpu"
        and x.dim() == 3 and x.shape == o.shape and x.stride(-1) == 1 and o.stride(-1) == 1
    )


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    # Created on the first parallel call (never at import) and kept for the process's life.
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ropekit-cpu")


def rotate_rows(
    pairs: list[tuple[torch.Tensor, torch.Tensor]],
    cos: torch.Tensor,
    sin: torch.Tensor,
    pos: torch.Tensor | int,
    *,
    interleaved: bool,
    conj: bool,
) -> None:
    """Rotate each ``(x, o)`` pair (``o`` may be ``x``: in place), all with the same rows.

    ``cos``/``sin``: fp32 ``(table_len, rotary_dim // 2)`` contiguous. ``pos``: int64 ``(rows,)``
    positions or the int position of row 0. Every pair must pass :func:`supports`.
    """
    ext = _ext()
    assert ext is not None and pairs
    if not (cos.dtype == sin.dtype == torch.float32 and cos.is_contiguous() and sin.is_contiguous()
            and cos.shape == sin.shape and cos.dim() == 2):
        raise ValueError("cos/sin must be contiguous float32 (table_len, rotary_dim // 2) tables of one shape.")
    half, rows = cos.shape[1], pairs[0][0].shape[0]
    head_dim = pairs[0][0].shape[-1]
    if isinstance(pos, torch.Tensor):
        pos = pos.to(torch.int64).contiguous()
        pos_ptr, start = pos.data_ptr(), 0
    else:
        pos_ptr, start = 0, int(pos)
    tensors = tuple(
        (x.data_ptr(), o.data_ptr(), x.stride(0), x.stride(1), o.stride(0), o.stride(1), x.shape[1],
         o.data_ptr() != x.data_ptr() and 2 * half < head_dim)
        for x, o in pairs
    )
    code = _CODES[pairs[0][0].dtype]
    common = (tensors, code, head_dim, half, cos.data_ptr(), sin.data_ptr(), cos.shape[0], pos_ptr, start,
              interleaved, conj)
    work = rows * sum(x.shape[1] for x, _ in pairs) * head_dim
    threads = min(torch.get_num_threads(), rows)
    if threads <= 1 or work < PARALLEL_MIN_ELEMS:
        ext.rotate(*common, 0, rows)
        return
    # Each thread checks only its own rows: check them all first, so no thread writes before a failure.
    lo, hi = (int(v) for v in torch.aminmax(pos)) if pos_ptr else (start, start + rows - 1)
    if lo < 0 or hi >= cos.shape[0]:
        raise ValueError(f"positions must be in [0, {cos.shape[0]}) (the cos/sin table), got [{lo}, {hi}].")
    bounds = [rows * i // threads for i in range(threads + 1)]
    futures = [_pool(threads - 1).submit(ext.rotate, *common, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    ext.rotate(*common, bounds[0], bounds[1])
    for f in futures:
        f.result()
