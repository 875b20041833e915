"""``RotaryEmbedding``: a module that owns the precise cos/sin table and rotates q and k."""

from __future__ import annotations

import torch
from torch import nn

from ropekit.core.config import RopeConfig
from ropekit.core.positions import token_positions
from ropekit.core.validation import check_positions
from ropekit.functional import apply_rotary, pick_backend

__all__ = ["RotaryEmbedding"]

_MIN_TABLE = 256


def _grown(n: int) -> int:
    # next power of two: amortised O(1) regrowth during decode
    return max(_MIN_TABLE, 1 << (max(n, 1) - 1).bit_length())


class RotaryEmbedding(nn.Module):
    """Rotate q and k with a :class:`~ropekit.RopeConfig`; the float32 table is cached and grown lazily.

    Frequencies that depend on the current length (dynamic NTK, LongRoPE) follow
    ``seq_len = max(position) + 1`` of each call, as transformers does.

    >>> import torch, ropekit
    >>> rope = ropekit.RotaryEmbedding(ropekit.RopeConfig(head_dim=64, base=100000.0))
    >>> q, k = torch.randn(2, 10, 9, 64), torch.randn(2, 10, 3, 64)
    >>> q2, k2 = rope(q, k)                           # positions 0..9
    >>> q3, k3 = rope(q[:, -1:], k[:, -1:], offset=9)   # decode step at position 9
    >>> torch.allclose(q3, q2[:, -1:], atol=1e-6)
    True
    """

    cos_table: torch.Tensor
    sin_table: torch.Tensor

    def __init__(self, cfg: RopeConfig, *, backend: str = "auto") -> None:
        super().__init__()
        if not isinstance(cfg, RopeConfig):
            raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
        self.config = cfg
        self.backend = backend
        self._key: tuple[float, ...] | None = None  # the inv_freq the table was built from
        assert cfg.rotary_dim is not None  # RopeConfig.__post_init__ resolves it
        self.register_buffer("cos_table", torch.empty(0, cfg.rotary_dim // 2), persistent=False)
        self.register_buffer("sin_table", torch.empty(0, cfg.rotary_dim // 2), persistent=False)

    def extra_repr(self) -> str:
        c = self.config
        return f"method={c.method}, head_dim={c.head_dim}, rotary_dim={c.rotary_dim}, layout={c.layout}"

    def tables(self, needed: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 ``(>= needed, rotary_dim // 2)`` cos/sin tables valid for positions ``< needed``."""
        device = self.cos_table.device if device is None else torch.device(device)
        dynamic = self.config.scaling is not None and self.config.scaling.depends_on_seq_len
        # static methods: the frequencies never change, so a call does no frequency work unless it grows the table
        key = tuple(self.config.inv_freq(needed).tolist()) if dynamic else ()
        stale = self.cos_table.dtype != torch.float32  # model.to(bf16) casts buffers: never serve a bf16 table
        if stale or key != self._key or self.cos_table.shape[0] < needed or self.cos_table.device != device:
            # length-dependent frequencies are tied to this length: don't serve longer positions with them
            length = needed if dynamic else _grown(needed)
            self.cos_table, self.sin_table = self.config.cos_sin_table(
                length, seq_len=needed if dynamic else None, device=device
            )
            self._key = key
        return self.cos_table, self.sin_table

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 cos/sin gathered at ``positions``: ``positions.shape + (rotary_dim // 2,)``."""
        check_positions(positions)
        cos, sin = self.tables(int(positions.max()) + 1 if positions.numel() else 1, positions.device)
        return cos[positions], sin[positions]

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor | None = None,
        *,
        positions: torch.Tensor | None = None,
        offset: int | torch.Tensor = 0,
        cu_seqlens: torch.Tensor | None = None,
        inplace: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rotate ``q`` ``(batch, seqlen, q_heads, head_dim)`` and ``k`` ``(batch, seqlen, kv_heads, head_dim)``.

        Positions: ``positions`` (``(seqlen,)``/``(batch, seqlen)`` ints), or contiguous from ``offset``
        (int or ``(batch,)`` tensor); packed ``(total, heads, head_dim)`` inputs take ``cu_seqlens``.
        """
        if q.dim() < 3:
            raise ValueError(f"q must be (batch, seqlen, heads, head_dim), got shape {tuple(q.shape)}.")
        if q.shape[-1] != self.config.head_dim:
            raise ValueError(f"q head_dim {q.shape[-1]} does not match config.head_dim={self.config.head_dim}.")
        # the highest position decides the table length (and the regime of length-dependent methods);
        # an int offset needs no device sync (the common decode case)
        where = token_positions(q.shape, positions=positions, offset=offset, cu_seqlens=cu_seqlens)
        assert where.needed is not None  # values are read here
        needed = max(where.needed, 1)
        cos, sin = self.tables(needed, q.device)
        return apply_rotary(
            q, k, cos, sin,
            positions=positions, offset=offset, cu_seqlens=cu_seqlens,
            layout=self.config.layout, inplace=inplace, backend=pick_backend(q, self.backend),
        )
