"""Turn the ways a caller can say "where are these tokens" into one checked record.

Four modes, exactly one per call:

- ``"positions"``: explicit ``(seqlen,)`` or ``(batch, seqlen)`` integer positions;
- ``"offset"``: contiguous ``offset + 0 .. seqlen-1`` from an int (the decode case: no device sync);
- ``"offsets"``: contiguous from a per-batch ``(batch,)`` integer tensor;
- ``"packed"``: ``(total_tokens, ...)`` inputs with ``cu_seqlens``; each sequence restarts at 0 plus
  an int or per-sequence ``(n_seqs,)`` offset.

:func:`token_positions` is the one place these are checked and normalised; the reference
(:func:`ropekit.core.reference.rotate_qk_ref`), the fused dispatch (:mod:`ropekit.kernels.dispatch`)
and :class:`ropekit.RotaryEmbedding` all consume its :class:`TokenPositions`. The native C kernel
keeps its own bounds check as a memory guard.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from ropekit.core.validation import check_int_dtype

__all__ = [
    "PositionMode",
    "TokenPositions",
    "check_int_offset",
    "positions_from_cu_seqlens",
    "token_positions",
]

PositionMode = Literal["positions", "offset", "offsets", "packed"]


class TokenPositions(NamedTuple):
    """Where the tokens of one call sit, checked; tensors live on the device asked for.

    Immutable; a ``NamedTuple`` rather than a frozen dataclass because it is built on every rotation
    (twice per ``RotaryEmbedding`` call), where a frozen dataclass's ``__init__`` costs twice as much.
    """

    mode: PositionMode  # which of the four ways the caller described the tokens
    positions: torch.Tensor | None  # "positions": (seqlen,) or (batch, seqlen) ints; else None
    offsets: torch.Tensor | None  # "offsets": (batch,), "packed": (n_seqs,) per-sequence starts; else None
    cu_seqlens: torch.Tensor | None  # "packed": (n_seqs + 1,) cumulative lengths from 0; else None
    offset: int  # the int start ("offset", "packed" without offsets); 0 otherwise
    needed: int | None  # table rows the tokens need (max position + 1, 0 for no tokens); None: values unread
    seqlen: int  # tokens per sequence; the packed token count in mode "packed"
    device: torch.device | None  # where expand() builds positions from an int offset (None: the default device)

    def expand(self) -> torch.Tensor:
        """Per-token int64 positions: ``(total_tokens,)`` when packed, else ``(seqlen,)``/``(batch, seqlen)``.

        >>> token_positions((2, 3), offset=4).expand().tolist()
        [4, 5, 6]
        """
        if self.mode == "positions":
            assert self.positions is not None
            return self.positions.long()
        if self.mode == "packed":
            assert self.cu_seqlens is not None
            return _packed_positions(self.cu_seqlens, self.offsets if self.offsets is not None else self.offset)
        if self.mode == "offsets":
            assert self.offsets is not None
            return self.offsets.long()[:, None] + torch.arange(self.seqlen, device=self.offsets.device)
        return torch.arange(self.seqlen, device=self.device) + self.offset


def check_int_offset(offset: object) -> int:
    """An int offset >= 0 (tensor offsets are checked by :func:`token_positions`)."""
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(f"offset must be an int >= 0 or an integer tensor, got {type(offset).__name__}.")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}.")
    return offset


def _top(t: torch.Tensor, arg: str) -> int:
    """Values >= 0; returns the maximum (-1 when empty). One device sync (``aminmax``)."""
    if t.numel() == 0:
        return -1
    lo, hi = torch.aminmax(t)
    if int(lo) < 0:
        raise ValueError(f"{arg} must be >= 0, got a minimum of {int(lo)}.")
    return int(hi)


def token_positions(
    shape: tuple[int, ...] | torch.Size,
    *,
    positions: torch.Tensor | None = None,
    offset: int | torch.Tensor = 0,
    cu_seqlens: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    read_values: bool = True,
    table_len: int | None = None,
) -> TokenPositions:
    """Check the position arguments of a ``(batch, seqlen, ...)`` (or packed ``(total, ...)``) input.

    ``shape``: the input's leading dims (``q.shape`` will do). ``device``: where the returned tensors
    live (``None``: where they are). ``read_values=False`` checks dtypes and shapes only, so no device
    sync happens (``torch.compile`` tracing, CUDA graph capture); ``needed`` is then ``None`` unless it
    follows from ints alone. With ``table_len`` every token must fall inside a table of that many rows.

    >>> import torch
    >>> tp = token_positions((2, 5), offset=torch.tensor([0, 7]), table_len=16)
    >>> tp.mode, tp.needed
    ('offsets', 12)
    >>> token_positions((2, 5), offset=12, table_len=16)
    Traceback (most recent call last):
    ...
    ValueError: offset + seqlen - 1 must be < 16 (the cos/sin table has 16 rows), got a maximum of 16.
    """
    dev = device if device is None or isinstance(device, torch.device) else torch.device(device)

    offsets: torch.Tensor | None = None
    off, top_offset = 0, -1
    if isinstance(offset, torch.Tensor):
        check_int_dtype(offset, arg="offset")
        top_offset = _top(offset, "offset") if read_values else -1
        offsets = offset if dev is None else offset.to(dev)
    else:
        off = check_int_offset(offset)
    needed: int | None = None
    if cu_seqlens is not None:
        if positions is not None:
            raise ValueError("pass either positions or cu_seqlens, not both.")
        check_int_dtype(cu_seqlens, arg="cu_seqlens")
        cu = cu_seqlens if dev is None else cu_seqlens.to(dev)
        if cu.dim() != 1 or cu.numel() < 2:
            raise ValueError(f"cu_seqlens must be a 1-D int tensor (n_seqs + 1,), got shape {tuple(cu.shape)}.")
        n_seqs = cu.numel() - 1
        if offsets is not None and offsets.shape != (n_seqs,):
            raise ValueError(f"offset must have shape (n_seqs,)=({n_seqs},), got {tuple(offsets.shape)}.")
        if read_values:
            lengths = cu.diff()
            if int(cu[0]) != 0 or bool((lengths < 0).any()):
                raise ValueError(f"cu_seqlens must start at 0 and be non-decreasing, got {cu.tolist()[:8]}.")
            if int(cu[-1]) != shape[0]:
                raise ValueError(f"cu_seqlens[-1]={int(cu[-1])} does not match the packed token count {shape[0]}.")
            # empty sequences hold no token, so their offset asks nothing of the table
            ends = lengths + (offsets if offsets is not None else off)
            needed = int(torch.where(lengths > 0, ends, torch.zeros_like(ends)).max())
        record = TokenPositions(mode="packed", positions=None, offsets=offsets, cu_seqlens=cu, offset=off,
                                needed=needed, seqlen=shape[0], device=dev)
        return _fits(record, "cu_seqlens with offset", table_len)
    batch, seqlen = shape[0], shape[1]
    if positions is not None:
        if offsets is not None or off != 0:
            raise ValueError("pass either positions or offset, not both.")
        if not isinstance(positions, torch.Tensor):
            raise TypeError(f"positions must be an integer torch.Tensor, got {type(positions).__name__}.")
        check_int_dtype(positions, arg="positions")  # the dtype error comes before the shape one
        if positions.shape not in ((seqlen,), (batch, seqlen)):
            raise ValueError(
                f"positions must have shape (seqlen,)=({seqlen},) or (batch, seqlen)=({batch}, {seqlen}), "
                f"got {tuple(positions.shape)}."
            )
        if read_values:
            needed = _top(positions, "positions") + 1
        pos = positions if dev is None else positions.to(dev)
        record = TokenPositions(mode="positions", positions=pos, offsets=None, cu_seqlens=None, offset=0,
                                needed=needed, seqlen=seqlen, device=dev)
        return _fits(record, "positions", table_len)
    if offsets is not None:
        if offsets.shape != (batch,):
            raise ValueError(f"offset tensor must have shape (batch,)=({batch},), got {tuple(offsets.shape)}.")
        if read_values:
            needed = top_offset + seqlen if seqlen and offsets.numel() else 0
        record = TokenPositions(mode="offsets", positions=None, offsets=offsets, cu_seqlens=None, offset=0,
                                needed=needed, seqlen=seqlen, device=dev)
        return _fits(record, "offset + seqlen - 1", table_len)
    record = TokenPositions(mode="offset", positions=None, offsets=None, cu_seqlens=None, offset=off,
                            needed=off + seqlen if seqlen else 0,  # ints only: known even without reading values
                            seqlen=seqlen, device=dev)
    return _fits(record, "offset + seqlen - 1", table_len)


def _fits(record: TokenPositions, arg: str, table_len: int | None) -> TokenPositions:
    if table_len is not None and record.needed is not None and record.needed > table_len:
        raise ValueError(
            f"{arg} must be < {table_len} (the cos/sin table has {table_len} rows), "
            f"got a maximum of {record.needed - 1}."
        )
    return record


def _packed_positions(cu_seqlens: torch.Tensor, offset: int | torch.Tensor) -> torch.Tensor:
    # unchecked: callers come through token_positions
    lengths = cu_seqlens.diff()
    n_tok = int(cu_seqlens[-1])
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), lengths.long(), output_size=n_tok)
    pos = torch.arange(n_tok, device=cu_seqlens.device) - starts
    if isinstance(offset, torch.Tensor):
        return pos + torch.repeat_interleave(offset.long().to(pos.device), lengths.long(), output_size=n_tok)
    return pos + offset


def positions_from_cu_seqlens(
    cu_seqlens: torch.Tensor, offset: int | torch.Tensor = 0, total: int | None = None
) -> torch.Tensor:
    """Per-token positions ``(total_tokens,)`` for packed sequences: each restarts at 0 (plus its offset).

    ``cu_seqlens``: ``(n_seqs + 1,)`` int tensor of cumulative lengths starting at 0.
    ``offset``: an int, or an ``(n_seqs,)`` int tensor (e.g. tokens already in each sequence's cache).

    >>> import torch
    >>> positions_from_cu_seqlens(torch.tensor([0, 2, 5]), offset=torch.tensor([10, 0])).tolist()
    [10, 11, 0, 1, 2]
    """
    n_tok = int(cu_seqlens[-1]) if isinstance(cu_seqlens, torch.Tensor) and cu_seqlens.numel() else 0
    tp = token_positions((n_tok if total is None else total,), offset=offset, cu_seqlens=cu_seqlens)
    return tp.expand()
