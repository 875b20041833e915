"""p-RoPE (Barbero et al. 2024, "Round and Round We Go! What makes Rotary Positional Encodings useful?"):
keep only the fraction ``p`` of the highest frequencies; the lowest ``1 - p`` pairs get frequency 0 and
act as position-free (semantic) channels. p = 1 is RoPE, p = 0 is NoPE. Gemma-style ``Proportional``
scaling is p-RoPE over the full head.

The result is a frequency vector/table, so every ropekit backend applies it unchanged
(``ropekit.functional.apply_rotary(q, k, *p_rope_cos_sin_table(cfg, p, n))``).
"""

from __future__ import annotations

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.frequencies import kept_pairs
from ropekit.core.tables import cos_sin_table

__all__ = ["p_rope_cos_sin_table", "p_rope_inv_freq"]


def p_rope_inv_freq(cfg: RopeConfig, p: float, *, seq_len: int | None = None) -> torch.Tensor:
    """Float64 ``(rotary_dim // 2,)``: ``cfg``'s frequencies with all but the ``round(p * pairs)``
    highest set to 0.

    >>> import ropekit
    >>> p_rope_inv_freq(ropekit.RopeConfig(head_dim=8, base=10000.0), 0.5).tolist()
    [1.0, 0.1, 0.0, 0.0]
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a fraction in [0, 1], got {p!r}.")
    inv = cfg.inv_freq(seq_len).clone()
    keep = kept_pairs(p, inv.numel())
    # the highest frequencies are the largest inv_freq; scaling can reorder them, so rank rather than slice
    order = torch.argsort(inv, descending=True, stable=True)
    inv[order[keep:]] = 0.0
    return inv


def p_rope_cos_sin_table(
    cfg: RopeConfig, p: float, length: int, *, seq_len: int | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 ``(length, rotary_dim // 2)`` cos/sin tables for p-RoPE (attention factor included)."""
    return cos_sin_table(p_rope_inv_freq(cfg, p, seq_len=seq_len), length, cfg.attention_factor, device)
