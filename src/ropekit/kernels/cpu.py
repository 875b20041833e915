"""CPU fast path: the native kernel when it is built, else the rotation in cache-sized chunks of tokens.

**Native** (:mod:`ropekit.kernels.cpu_native`, C, built at install when a compiler is present): one
pass over q and k, each pair rotated in fp32 registers and rounded once to the storage dtype. It takes
fp32/bf16/fp16 with a contiguous head_dim (any row/head strides, e.g. views of a fused qkv), every
position mode, both layouts and partial rotary.

**Torch** (everything else: float64 inputs or tables, a strided head_dim, or no compiler at install): the few ops of a
chunk run while the chunk is still in cache, so DRAM sees about one read and one write of q/k. Choices:

- interleaved pairs rotate as one complex multiply per chunk;
- "half" pairs take three ops per chunk (``x*cos`` on both halves at once, one ``addcmul`` per
  half): eager torch has no single-pass op for this pairing;
- bf16/fp16 chunks are widened to fp32, rotated, and rounded once on the way back;
- cos/sin are sliced or gathered per chunk into small reused buffers, never at full size;
- chunk views are split once per call (per-chunk slicing in Python is slow);
- in place allocates only chunk buffers (a few MiB), so big calls pay no page faults; out of place
  the fresh output's first-touch page faults dominate.

Speeds, against a same-bytes copy: ``benchmarks/bench_apply.py``, results in ``benchmarks/results/``
(numbers are not repeated here, so they cannot go stale).

Same calling convention as :func:`ropekit.kernels.triton_rope.launch`; inputs are validated by
:mod:`ropekit.kernels.dispatch` (through :func:`ropekit.core.positions.token_positions`).
"""

from __future__ import annotations

import torch

from ropekit.core.positions import positions_from_cu_seqlens
from ropekit.kernels import cpu_native

__all__ = ["CHUNK_ELEMS", "launch"]

#: elements of q+k per chunk: big enough to amortise per-op overhead, small enough that a
#: chunk and its output stay in L2/L3 across the few ops that touch it.
CHUNK_ELEMS = 128 * 1024


class _Buffers:
    """Chunk-sized scratch tensors, allocated on first use and reused across chunks."""

    def __init__(self, rows: int, half: int, calc: torch.dtype, table: torch.dtype) -> None:
        self.calc = calc
        self.max_rows = rows  # rows per chunk for large inputs
        rows *= 4  # see the one-chunk rule for small inputs in _torch_segment()
        self.cos = torch.empty(rows, half, dtype=table)
        self.sin = torch.empty(rows, half, dtype=table)
        self.neg = torch.empty(rows, half, dtype=calc)
        self.w = torch.empty(rows, half, 2, dtype=calc)
        self._scratch: list[torch.Tensor | None] = [None, None]

    def get(self, slot: int, shape: torch.Size) -> torch.Tensor:
        numel = shape.numel()
        buf = self._scratch[slot]
        if buf is None or buf.numel() < numel:
            buf = self._scratch[slot] = torch.empty(numel, dtype=self.calc)
        return buf[:numel].view(shape)


def _complex(x: torch.Tensor) -> torch.Tensor | None:
    """``x`` (..., rd) as complex pairs (2i, 2i+1), or None when the strides do not allow a view."""
    try:
        return torch.view_as_complex(x.unflatten(-1, (-1, 2)))
    except RuntimeError:
        return None


def _rotate_into(x: torch.Tensor, o: torch.Tensor, c: torch.Tensor, s: torch.Tensor,
                 w: torch.Tensor | None, interleaved: bool) -> None:
    """``o = rotate(x)`` for rotary channels ``x``/``o`` (n, H, rd) of the compute dtype; no aliasing
    except when the complex path applies (an elementwise multiply may write over its input)."""
    if interleaved and w is not None:
        xv, ov = _complex(x), _complex(o)
        if xv is not None and ov is not None:
            torch.mul(xv, w, out=ov)
            return
    half = c.shape[-1]
    if interleaved:
        x1, x2, o1, o2 = x[..., 0::2], x[..., 1::2], o[..., 0::2], o[..., 1::2]
        torch.mul(x1, c, out=o1)
        torch.mul(x2, c, out=o2)
    else:
        x1, x2, o1, o2 = x[..., :half], x[..., half:], o[..., :half], o[..., half:]
        # Both halves times cos in one op (cos broadcast over heads and halves).
        torch.mul(x.unflatten(-1, (2, half)), c.unsqueeze(-2), out=o.unflatten(-1, (2, half)))
    o1.addcmul_(x2, s, value=-1.0)
    o2.addcmul_(x1, s)


def _rotate_chunk(x: torch.Tensor, o: torch.Tensor, c: torch.Tensor, s: torch.Tensor,
                  w: torch.Tensor | None, interleaved: bool, bufs: _Buffers) -> None:
    rd = 2 * c.shape[-1]
    inplace = o.data_ptr() == x.data_ptr()
    xr, orr = x[..., :rd], o[..., :rd]
    if x.dtype == bufs.calc:
        complex_ok = interleaved and w is not None and _complex(xr) is not None and _complex(orr) is not None
        if inplace and not complex_ok:
            src = bufs.get(0, xr.shape)
            src.copy_(xr)  # the chunk is in cache: this copy is cheap, and frees xr to be the output
            _rotate_into(src, orr, c, s, w, interleaved)
        else:
            _rotate_into(xr, orr, c, s, w, interleaved)
    else:
        # Low precision: widen once, rotate in fp32, round once on the way back.
        xf = bufs.get(0, xr.shape)
        xf.copy_(xr)
        if interleaved and w is not None:
            _rotate_into(xf, xf, c, s, w, interleaved)
            orr.copy_(xf)
        else:
            of = bufs.get(1, xr.shape)
            _rotate_into(xf, of, c, s, w, interleaved)
            orr.copy_(of)
    if not inplace and rd < x.shape[-1]:
        o[..., rd:].copy_(x[..., rd:])


def _rows(t: torch.Tensor | None, packed: bool) -> torch.Tensor | None:
    """(batch*seqlen, H, D) view, or None when the strides do not allow one without a copy."""
    if t is None or packed:
        return t
    try:
        return t.view(-1, t.shape[-2], t.shape[-1])
    except RuntimeError:
        return None


def _segments(q, k, q_out, k_out, positions, offsets, cu_seqlens, offset):  # type: ignore[no-untyped-def]
    """Yield (q, k, q_out, k_out, positions (n,) or int start) row blocks covering every token."""
    packed = q.dim() == 3
    if packed:
        if cu_seqlens.numel() == 2 and offsets is None:
            yield q, k, q_out, k_out, offset
        else:
            yield q, k, q_out, k_out, positions_from_cu_seqlens(cu_seqlens, offsets if offsets is not None else offset)
        return
    batch, seqlen = q.shape[0], q.shape[1]
    views = [_rows(t, packed) for t in (q, k, q_out, k_out)]
    flat_ok = all(v is not None for v, t in zip(views, (q, k, q_out, k_out)) if t is not None)
    if batch == 1 or not flat_ok:
        for b in range(batch):
            if positions is not None:
                pos: torch.Tensor | int = positions[b] if positions.dim() == 2 else positions
            else:
                pos = offset + (int(offsets[b]) if offsets is not None else 0)
            yield q[b], None if k is None else k[b], q_out[b], None if k_out is None else k_out[b], pos
        return
    if positions is not None:
        pos = positions.expand(batch, seqlen).reshape(-1)
    else:
        pos = torch.arange(seqlen).add_(offset).expand(batch, seqlen)
        if offsets is not None:
            pos = pos + offsets.to(torch.int64)[:, None]
        pos = pos.reshape(-1)
    yield (*views, pos)


def _head(t: torch.Tensor, n: int) -> torch.Tensor:
    return t if t.shape[0] == n else t[:n]


class _Plan:
    """One tensor's chunk views, split once per call so each chunk costs a handful of torch calls.

    Paths: complex multiply (interleaved, fp32/fp64), three ops for "half" (``x*cos`` on both
    halves at once, then one ``addcmul`` per half; in place via a cached copy of the chunk), and
    widen -> rotate -> round for bf16/fp16. Anything else (interleaved views whose strides forbid a
    complex view) falls back to :func:`_rotate_chunk`.
    """

    def __init__(self, x: torch.Tensor, o: torch.Tensor, rows: int, half: int, interleaved: bool,
                 bufs: _Buffers) -> None:
        rd, calc, heads = 2 * half, bufs.calc, x.shape[-2]
        self.bufs, self.interleaved = bufs, interleaved
        self.inplace = o.data_ptr() == x.data_ptr()
        xr, orr = x[..., :rd], o[..., :rd]
        self.lowp = x.dtype != calc
        xv = ov = None
        if interleaved and not self.lowp:
            xv, ov = _complex(xr), _complex(orr)
        self.fallback = interleaved and not self.lowp and (xv is None or ov is None)
        if self.fallback:
            self.xs, self.os = x.split(rows), o.split(rows)
            return
        if not self.inplace and rd < x.shape[-1]:
            o[..., rd:].copy_(x[..., rd:])  # partial rotary: the tail passes through, in one pass
        if interleaved and not self.lowp:
            self.xv, self.ov = xv.split(rows), ov.split(rows)
            return
        self.xr, self.orr = xr.split(rows), orr.split(rows)
        if self.lowp or self.inplace:
            self.buf = torch.empty(rows, heads, rd, dtype=calc)
        if self.lowp and interleaved:
            self.bufv = torch.view_as_complex(self.buf.unflatten(-1, (-1, 2)))
            return
        if self.lowp:
            self.out = torch.empty(rows, heads, rd, dtype=calc)
            src, dst = self.buf, self.out
            self.src = (src, src.unflatten(-1, (2, half)), src[..., :half], src[..., half:])
            self.dst = (dst.unflatten(-1, (2, half)), dst[..., :half], dst[..., half:])
            return
        # fp32/fp64 "half": read from x (or, in place, from a copy of the chunk), write o.
        self.x4 = xr.unflatten(-1, (2, half)).split(rows)
        self.x1, self.x2 = xr[..., :half].split(rows), xr[..., half:].split(rows)
        self.o4 = orr.unflatten(-1, (2, half)).split(rows)
        self.o1, self.o2 = orr[..., :half].split(rows), orr[..., half:].split(rows)
        if self.inplace:
            b = self.buf
            self.src = (b, b.unflatten(-1, (2, half)), b[..., :half], b[..., half:])

    def run(self, i: int, n: int, c3: torch.Tensor, s3: torch.Tensor, w: torch.Tensor | None) -> None:
        if self.fallback:
            _rotate_chunk(self.xs[i], self.os[i], c3, s3, w, self.interleaved, self.bufs)
            return
        if self.interleaved and not self.lowp:
            torch.mul(self.xv[i], w, out=self.ov[i])
            return
        c4 = c3.unsqueeze(-2)
        if self.lowp and self.interleaved:
            b = _head(self.buf, n)
            b.copy_(self.xr[i])
            _head(self.bufv, n).mul_(w)
            self.orr[i].copy_(b)
            return
        if self.lowp:
            src, s4, s1, s2 = (_head(t, n) for t in self.src)
            d4, d1, d2 = (_head(t, n) for t in self.dst)
            src.copy_(self.xr[i])
            torch.mul(s4, c4, out=d4)
            d1.addcmul_(s2, s3, value=-1.0)
            d2.addcmul_(s1, s3)
            self.orr[i].copy_(_head(self.out, n))
            return
        if self.inplace:
            src, x4, x1, x2 = (_head(t, n) for t in self.src)
            src.copy_(self.xr[i])  # the chunk is in cache: cheap, and frees x to be the output
        else:
            x4, x1, x2 = self.x4[i], self.x1[i], self.x2[i]
        torch.mul(x4, c4, out=self.o4[i])
        self.o1[i].addcmul_(x2, s3, value=-1.0)
        self.o2[i].addcmul_(x1, s3)


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
) -> None:
    """Rotate ``q`` (and ``k``) into ``q_out`` (``k_out``), which may alias the inputs (in place)."""
    if cpu_native.launch(q, k, q_out, k_out, cos_table, sin_table, positions=positions, offsets=offsets,
                         cu_seqlens=cu_seqlens, offset=offset, interleaved=interleaved, conj=conj):
        return
    bufs = None
    for qs, ks, qos, kos, pos in _segments(q, k, q_out, k_out, positions, offsets, cu_seqlens, offset):
        pairs = [(x, o) for x, o in ((qs, qos), (ks, kos)) if x is not None and x.shape[-2] and x.shape[0]]
        if not pairs:
            continue
        if bufs is None:
            bufs = _new_buffers(q, k, cos_table)
        _torch_segment(pairs, pos, cos_table, sin_table, bufs, interleaved, conj)


def _new_buffers(q: torch.Tensor, k: torch.Tensor | None, cos_table: torch.Tensor) -> _Buffers:
    calc = torch.float64 if q.dtype == torch.float64 else torch.float32
    heads = q.shape[-2] + (0 if k is None else k.shape[-2])
    max_rows = max(1, CHUNK_ELEMS // max(1, heads * q.shape[-1]))
    return _Buffers(max_rows, cos_table.shape[1], calc, cos_table.dtype)


def _torch_segment(pairs: list[tuple[torch.Tensor, torch.Tensor]], pos: torch.Tensor | int,
                   cos_table: torch.Tensor, sin_table: torch.Tensor, bufs: _Buffers, interleaved: bool,
                   conj: bool) -> None:
    """The pure-torch path for one segment of rows: chunk by chunk, each chunk's ops in cache."""
    half = cos_table.shape[1]
    calc = bufs.calc
    n_rows = pairs[0][0].shape[0]
    max_rows = bufs.max_rows
    if n_rows <= 4 * max_rows:
        rows = n_rows  # small (decode-sized) work is cache-resident anyway: one chunk, fewest calls
    else:
        rows = -(-n_rows // -(-n_rows // max_rows))  # equal chunks: no tiny remainder chunk
    plans = [_Plan(x, o, rows, half, interleaved, bufs) for x, o in pairs]
    wv = torch.view_as_complex(bufs.w).unsqueeze(1)
    if isinstance(pos, int):
        cos_chunks = cos_table[pos: pos + n_rows].split(rows)
        sin_chunks = sin_table[pos: pos + n_rows].split(rows)
    else:
        pos_chunks = pos.split(rows)
    for i in range(-(-n_rows // rows)):
        if isinstance(pos, int):
            c, s = cos_chunks[i], sin_chunks[i]
        else:
            n = pos_chunks[i].shape[0]
            c = torch.index_select(cos_table, 0, pos_chunks[i], out=bufs.cos[:n])
            s = torch.index_select(sin_table, 0, pos_chunks[i], out=bufs.sin[:n])
        n = c.shape[0]
        if c.dtype != calc:
            c, s = c.to(calc), s.to(calc)
        if conj:
            s = torch.neg(s, out=bufs.neg[:n])
        w = None
        if interleaved:
            torch.stack((c, s), dim=-1, out=bufs.w[:n])
            w = _head(wv, n)
        c3, s3 = c.unsqueeze(1), s.unsqueeze(1)
        for plan in plans:
            plan.run(i, n, c3, s3, w)
