"""Fused Triton RoPE: one launch rotates q and k (GQA head counts may differ).

Grid: ``(token blocks, q head blocks + k head blocks)``. Each program loads the fp32 cos/sin rows of
its ``BLOCK_T`` tokens once, rotates ``BLOCK_H`` heads of q *or* k, and writes the result with one
rounding to the output dtype. Positions come from one of three sources (``POS_MODE``):

- 0: contiguous ``offset + s`` (plus a per-batch ``offsets[b]`` tensor when given),
- 1: an explicit ``(seqlen,)``/``(batch, seqlen)`` int tensor,
- 2: packed varlen: a binary search of ``cu_seqlens`` per token (plus optional per-sequence offsets).

Tensors are addressed through their strides, so slices of a fused qkv projection work without a copy.
Backward is the same launch with ``conj=True`` (sin negated). A position outside the table turns the
token's output into NaN instead of reading out of bounds (the host validates in eager mode; the guard
matters under CUDA-graph capture, where the host check is skipped).

Importing this module imports triton; ``TRITON_INTERPRET=1`` must be set before that import for the
CPU interpreter (triton reads it when ``@triton.jit`` decorates the kernel).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["INTERPRETED", "launch"]


@triton.jit
def _to_out(x, o_ptr, MANUAL_BF16: tl.constexpr):
    # The interpreter truncates fp32 -> bf16; round to nearest even by hand there so CPU tests check
    # the same single rounding the GPU's native conversion does.
    if MANUAL_BF16:
        u = x.to(tl.float32).to(tl.uint32, bitcast=True)
        u = u + 0x7FFF + ((u >> 16) & 1)
        return (u >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(o_ptr.dtype.element_ty)


@triton.jit
def _rotate_heads(
    x_ptr, o_ptr, sx_b, sx_s, sx_h, sx_d, so_b, so_s, so_h, so_d,
    b, s, tmask, h0, H, c, sn, HALF, ROT, D,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_TAIL: tl.constexpr,
    INTERLEAVED: tl.constexpr, COPY_TAIL: tl.constexpr, COMPUTE: tl.constexpr, MANUAL_BF16: tl.constexpr,
):
    # (BLOCK_T, BLOCK_H, ...) tiles; int64 row offsets so large strided tensors cannot overflow.
    h = h0 + tl.arange(0, BLOCK_H)
    rmask = tmask[:, None, None] & (h < H)[None, :, None]
    hh = h.to(tl.int64)[None, :, None]
    x_row = x_ptr + b[:, None, None] * sx_b + s[:, None, None] * sx_s + hh * sx_h
    o_row = o_ptr + b[:, None, None] * so_b + s[:, None, None] * so_s + hh * so_h
    if INTERLEAVED:
        # Load the 2*BLOCK_P channels contiguously and split pairs (2i, 2i+1) in registers.
        d = tl.arange(0, 2 * BLOCK_P)[None, None, :]
        m = rmask & (d < ROT)
        x = tl.load(x_row + d * sx_d, mask=m, other=0.0).to(COMPUTE)
        x1, x2 = tl.split(tl.reshape(x, (BLOCK_T, BLOCK_H, BLOCK_P, 2)))
        o = tl.join(x1 * c - x2 * sn, x2 * c + x1 * sn)
        o = tl.reshape(o, (BLOCK_T, BLOCK_H, 2 * BLOCK_P))
        tl.store(o_row + d * so_d, _to_out(o, o_ptr, MANUAL_BF16), mask=m)
    else:
        p = tl.arange(0, BLOCK_P)[None, None, :]
        m = rmask & (p < HALF)
        x1 = tl.load(x_row + p * sx_d, mask=m, other=0.0).to(COMPUTE)
        x2 = tl.load(x_row + (p + HALF) * sx_d, mask=m, other=0.0).to(COMPUTE)
        tl.store(o_row + p * so_d, _to_out(x1 * c - x2 * sn, o_ptr, MANUAL_BF16), mask=m)
        tl.store(o_row + (p + HALF) * so_d, _to_out(x2 * c + x1 * sn, o_ptr, MANUAL_BF16), mask=m)
    if COPY_TAIL:
        # Partial rotary, out of place: channels rotary_dim.. pass through unchanged.
        d = ROT + tl.arange(0, BLOCK_TAIL)[None, None, :]
        m = rmask & (d < D)
        tl.store(o_row + d * so_d, tl.load(x_row + d * sx_d, mask=m), mask=m)


@triton.jit
def _rope_kernel(
    q_ptr, k_ptr, qo_ptr, ko_ptr, cos_ptr, sin_ptr, pos_ptr, off_ptr, cu_ptr,
    sq_b, sq_s, sq_h, sq_d, sqo_b, sqo_s, sqo_h, sqo_d,
    sk_b, sk_s, sk_h, sk_d, sko_b, sko_s, sko_h, sko_d,
    s_tab, s_pos_b, s_pos_s,
    S, n_tok, Hq, Hkv, table_len, offset, n_seqs, n_search, n_qblk,
    HALF, ROT, D,
    POS_MODE: tl.constexpr, HAS_OFF_T: tl.constexpr, CONJ: tl.constexpr,
    INTERLEAVED: tl.constexpr, COPY_TAIL: tl.constexpr, COMPUTE: tl.constexpr, MANUAL_BF16: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_TAIL: tl.constexpr,
):
    pid_t = tl.program_id(0)
    pid_h = tl.program_id(1)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = t < n_tok
    t = tl.where(tmask, t, 0).to(tl.int64)
    b = t // S
    s = t % S
    if POS_MODE == 0:
        pos = s + offset
        if HAS_OFF_T:
            pos += tl.load(off_ptr + b, mask=tmask, other=0).to(tl.int64)
    elif POS_MODE == 1:
        pos = tl.load(pos_ptr + b * s_pos_b + s * s_pos_s, mask=tmask, other=0).to(tl.int64)
    else:
        # Packed varlen: find seq with cu[seq] <= t < cu[seq + 1] (empty sequences are skipped).
        lo = tl.zeros((BLOCK_T,), dtype=tl.int64)
        hi = lo + n_seqs
        for _ in range(n_search):
            mid = (lo + hi) // 2
            go = tl.load(cu_ptr + mid).to(tl.int64) <= t
            lo = tl.where(go, mid, lo)
            hi = tl.where(go, hi, mid)
        pos = t - tl.load(cu_ptr + lo).to(tl.int64) + offset
        if HAS_OFF_T:
            pos += tl.load(off_ptr + lo, mask=tmask, other=0).to(tl.int64)
    valid = tmask & (pos >= 0) & (pos < table_len)
    pos = tl.where(valid, pos, 0)
    p = tl.arange(0, BLOCK_P)
    cmask = valid[:, None] & (p < HALF)[None, :]
    toff = pos[:, None] * s_tab + p[None, :]
    c = tl.load(cos_ptr + toff, mask=cmask, other=float("nan")).to(COMPUTE)[:, None, :]
    sn = tl.load(sin_ptr + toff, mask=cmask, other=float("nan")).to(COMPUTE)[:, None, :]
    if CONJ:
        sn = -sn
    if pid_h < n_qblk:
        _rotate_heads(
            q_ptr, qo_ptr, sq_b, sq_s, sq_h, sq_d, sqo_b, sqo_s, sqo_h, sqo_d,
            b, s, tmask, pid_h * BLOCK_H, Hq, c, sn, HALF, ROT, D,
            BLOCK_T, BLOCK_H, BLOCK_P, BLOCK_TAIL, INTERLEAVED, COPY_TAIL, COMPUTE, MANUAL_BF16,
        )
    else:
        _rotate_heads(
            k_ptr, ko_ptr, sk_b, sk_s, sk_h, sk_d, sko_b, sko_s, sko_h, sko_d,
            b, s, tmask, (pid_h - n_qblk) * BLOCK_H, Hkv, c, sn, HALF, ROT, D,
            BLOCK_T, BLOCK_H, BLOCK_P, BLOCK_TAIL, INTERLEAVED, COPY_TAIL, COMPUTE, MANUAL_BF16,
        )


#: True when the kernel was decorated under ``TRITON_INTERPRET=1`` (CPU tensors allowed).
INTERPRETED: bool = type(_rope_kernel).__name__ == "InterpretedFunction"

# Elements (in and out) one program touches; 4096 keeps registers modest at 4 warps.
_TILE_ELEMS = 4096


def _as4d(x: torch.Tensor) -> tuple[int, ...]:
    """Strides as (batch, seq, head, dim); packed (total, H, D) gets a zero batch stride."""
    st = x.stride()
    return st if x.dim() == 4 else (0, *st)


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
    """Rotate ``q`` (and ``k``) into ``q_out`` (``k_out``), which may alias the inputs (in place).

    Inputs are validated by the caller (:mod:`ropekit.kernels.dispatch`). ``q``: ``(batch, seqlen,
    Hq, D)`` or packed ``(total, Hq, D)`` with ``cu_seqlens``; tables ``(table_len, rotary_dim//2)``
    with unit column stride and identical strides; ``positions`` int ``(seqlen,)``/``(batch, seqlen)``.
    """
    packed = q.dim() == 3
    batch, seqlen = (1, q.shape[0]) if packed else (q.shape[0], q.shape[1])
    n_tok = batch * seqlen
    hq, d = q.shape[-2], q.shape[-1]
    hkv = 0 if k is None else k.shape[-2]
    if n_tok == 0 or (hq == 0 and hkv == 0):
        return
    half = cos_table.shape[1]
    rot = 2 * half
    block_p = triton.next_power_of_2(half)
    block_h = min(8, triton.next_power_of_2(max(1, min(hq, hkv) if hkv else hq)))
    block_t = max(1, min(_TILE_ELEMS // (2 * block_p * block_h), triton.next_power_of_2(n_tok)))
    n_qblk = triton.cdiv(hq, block_h)
    n_kblk = triton.cdiv(hkv, block_h)
    grid = (triton.cdiv(n_tok, block_t), n_qblk + n_kblk)

    if positions is not None:
        pos_mode, pos_st = 1, ((0, positions.stride(0)) if positions.dim() == 1 else positions.stride())
    else:
        pos_mode, pos_st = (2 if cu_seqlens is not None else 0), (0, 0)
    n_seqs = 0 if cu_seqlens is None else cu_seqlens.numel() - 1
    n_search = max(1, n_seqs).bit_length() + 1
    kk, kko = (k, k_out) if k is not None else (q, q_out)  # never read: n_kblk == 0
    dummy = q  # placeholder pointer for absent optional tensors (never dereferenced)
    compute = tl.float64 if q.dtype == torch.float64 else tl.float32
    _rope_kernel[grid](
        q, kk, q_out, kko, cos_table, sin_table,
        positions if positions is not None else dummy,
        offsets if offsets is not None else dummy,
        cu_seqlens if cu_seqlens is not None else dummy,
        *_as4d(q), *_as4d(q_out), *_as4d(kk), *_as4d(kko),
        cos_table.stride(0), *pos_st,
        seqlen, n_tok, hq, hkv, cos_table.shape[0], offset, n_seqs, n_search, n_qblk,
        half, rot, d,
        POS_MODE=pos_mode, HAS_OFF_T=offsets is not None, CONJ=conj,
        INTERLEAVED=interleaved, COPY_TAIL=(rot < d) and (q_out.data_ptr() != q.data_ptr()),
        COMPUTE=compute, MANUAL_BF16=INTERPRETED and q_out.dtype == torch.bfloat16,
        BLOCK_T=block_t, BLOCK_H=block_h, BLOCK_P=block_p,
        BLOCK_TAIL=triton.next_power_of_2(max(1, d - rot)),
        num_warps=4,
    )
