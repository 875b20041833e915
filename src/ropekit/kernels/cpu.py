"""CPU fast path: the rotation in cache-sized chunks of tokens, with ``out=`` torch ops.

RoPE is memory-bound. Several full-tensor passes (``x1*c``, ``x2*s``, ...) would each stream q and k
through DRAM; here every op of a chunk runs while the chunk is still in L2, so DRAM sees one read
and one write of q/k, as a copy does. Further choices, each measured (``benchmarks/bench_apply.py``):

- interleaved pairs rotate as one complex multiply (a vectorised kernel, in place when allowed);
- cos/sin are gathered per chunk into small reused buffers, never at full ``(tokens, rotary_dim)``;
- bf16/fp16 chunks are widened to fp32, rotated, and rounded once on the way back;
- in place allocates only chunk buffers (well under 32 MiB), so big calls pay no page faults.

Same calling convention as :func:`ropekit.kernels.triton_rope.launch`; inputs are validated by
:mod:`ropekit.kernels.dispatch`.
"""

from __future__ import annotations

import torch

from ropekit.core.positions import positions_from_cu_seqlens

__all__ = ["CHUNK_ELEMS", "launch"]

#: elements of q+k per chunk: big enough to amortise per-op overhead (~µs), small enough that a
#: chunk and its output stay in L2/L3 across the few ops that touch it.
CHUNK_ELEMS = 256 * 1024


class _Buffers:
    """Chunk-sized scratch tensors, allocated on first use and reused across chunks."""

    def __init__(self, rows: int, half: int, calc: torch.dtype, table: torch.dtype) -> None:
        self.calc = calc
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
    half = cos_table.shape[1]
    calc = torch.float64 if q.dtype == torch.float64 else torch.float32
    heads = q.shape[-2] + (0 if k is None else k.shape[-2])
    max_rows = max(1, CHUNK_ELEMS // max(1, heads * q.shape[-1]))
    bufs = _Buffers(max_rows, half, calc, cos_table.dtype)
    for qs, ks, qos, kos, pos in _segments(q, k, q_out, k_out, positions, offsets, cu_seqlens, offset):
        n_rows = qs.shape[0]
        if n_rows == 0:
            continue
        rows = -(-n_rows // -(-n_rows // max_rows))  # equal chunks: no tiny remainder chunk
        # Chunk views made in one call each (per-chunk slicing in Python would cost more than the math).
        pairs = [(x.split(rows), o.split(rows)) for x, o in ((qs, qos), (ks, kos)) if x is not None and x.shape[-2]]
        if isinstance(pos, int):
            cos_chunks = cos_table[pos: pos + n_rows].split(rows)
            sin_chunks = sin_table[pos: pos + n_rows].split(rows)
        else:
            pos_chunks = pos.split(rows)
        for i in range(len(pairs[0][0]) if pairs else 0):
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
                w = torch.view_as_complex(torch.stack((c, s), dim=-1, out=bufs.w[:n])).unsqueeze(1)
            c3, s3 = c.unsqueeze(1), s.unsqueeze(1)
            for xs, os_ in pairs:
                _rotate_chunk(xs[i], os_[i], c3, s3, w, interleaved, bufs)
