"""Turn the ways a caller can say "where are these tokens" into one integer position tensor."""

from __future__ import annotations

import torch

from ropekit.core.validation import check_positions

__all__ = ["check_int_offset", "positions_from_cu_seqlens", "resolve_positions"]


def positions_from_cu_seqlens(
    cu_seqlens: torch.Tensor, offset: int | torch.Tensor = 0, total: int | None = None
) -> torch.Tensor:
    """Per-token positions ``(total_tokens,)`` for packed sequences: each restarts at 0 (plus its offset).

    ``cu_seqlens``: ``(n_seqs + 1,)`` int tensor of cumulative lengths starting at 0.
    ``offset``: an int, or an ``(n_seqs,)`` int tensor (e.g. tokens already in each sequence's cache).
    """
    check_positions(cu_seqlens, arg="cu_seqlens")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or int(cu_seqlens[0]) != 0:
        raise ValueError("cu_seqlens must be a 1-D int tensor (n_seqs + 1,) starting at 0.")
    lengths = cu_seqlens.diff()
    if bool((lengths < 0).any()):
        raise ValueError("cu_seqlens must be non-decreasing.")
    n_tok = int(cu_seqlens[-1])
    if total is not None and n_tok != total:
        raise ValueError(f"cu_seqlens[-1]={n_tok} does not match the packed token count {total}.")
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), lengths.long(), output_size=n_tok)
    pos = torch.arange(n_tok, device=cu_seqlens.device) - starts
    if isinstance(offset, torch.Tensor):
        check_positions(offset, arg="offset")
        if offset.shape != (lengths.numel(),):
            raise ValueError(f"offset must have shape (n_seqs,)=({lengths.numel()},), got {tuple(offset.shape)}.")
        pos = pos + torch.repeat_interleave(offset.long(), lengths.long(), output_size=n_tok)
    else:
        pos = pos + check_int_offset(offset)
    return pos


def check_int_offset(offset: object) -> int:
    """An int offset >= 0 (tensor offsets are checked with check_positions)."""
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(f"offset must be an int >= 0 or an integer tensor, got {type(offset).__name__}.")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}.")
    return offset


def resolve_positions(
    batch: int,
    seqlen: int,
    *,
    positions: torch.Tensor | None = None,
    offset: int | torch.Tensor = 0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Positions as an int64 tensor of shape ``(seqlen,)`` or ``(batch, seqlen)``.

    Exactly one of ``positions`` (``(seqlen,)`` or ``(batch, seqlen)``) or ``offset`` (int, or
    ``(batch,)`` tensor: contiguous positions ``offset + 0 .. seqlen-1``) describes the tokens.
    """
    if positions is not None:
        if isinstance(offset, torch.Tensor) or offset != 0:
            raise ValueError("pass either positions or offset, not both.")
        check_positions(positions)
        if positions.shape not in ((seqlen,), (batch, seqlen)):
            raise ValueError(
                f"positions must have shape (seqlen,)=({seqlen},) or (batch, seqlen)=({batch}, {seqlen}), "
                f"got {tuple(positions.shape)}."
            )
        return positions.long()
    ar = torch.arange(seqlen, device=device)
    if isinstance(offset, torch.Tensor):
        check_positions(offset, arg="offset")
        if offset.shape != (batch,):
            raise ValueError(f"offset tensor must have shape (batch,)=({batch},), got {tuple(offset.shape)}.")
        return offset.long().to(ar.device)[:, None] + ar
    return ar + check_int_offset(offset)
