"""xPos (Sun et al. 2022, "A Length-Extrapolatable Transformer"): RoPE plus a per-pair exponential
scale that multiplies q and divides k, so attention decays with relative distance.

scale_j(p) = ((2j + 0.4 d) / (1.4 d)) ** ((p - center) / scale_base), j < d/2 the pair index. q uses
cos * scale, k uses cos / scale (sin likewise), so q_m . k_n depends on m - n only. ``center`` only keeps
magnitudes in range; flash-attn centres at seqlen // 2, which breaks with packed sequences, so the default
here is 0 and callers with long contexts pass a fixed centre (e.g. the context midpoint).
"""

from __future__ import annotations

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.reference import rotate_gathered
from ropekit.core.tables import angles
from ropekit.core.validation import check_positive

__all__ = ["apply_xpos", "xpos_cos_sin"]


def xpos_cos_sin(
    cfg: RopeConfig, positions: torch.Tensor, *, scale_base: float = 512.0, center: float = 0.0,
    seq_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float32 ``(cos_q, sin_q, cos_k, sin_k)`` of shape ``positions.shape + (rotary_dim // 2,)``."""
    check_positive("scale_base", scale_base)
    d = cfg.rotary_dim
    ang = angles(cfg.inv_freq(seq_len), positions)
    j = torch.arange(0, d, 2, dtype=torch.float64, device=ang.device)  # type: ignore[arg-type]
    zeta = (j + 0.4 * d) / (1.4 * d)  # type: ignore[operator]
    power = (positions.to(ang.device, torch.float64)[..., None] - center) / scale_base
    scale = zeta**power
    a = cfg.attention_factor
    cos, sin = ang.cos() * a, ang.sin() * a
    out = (cos * scale, sin * scale, cos / scale, sin / scale)
    return tuple(t.to(torch.float32).to(positions.device) for t in out)  # type: ignore[return-value]


def apply_xpos(
    q: torch.Tensor, k: torch.Tensor, cfg: RopeConfig, positions: torch.Tensor, *, scale_base: float = 512.0,
    center: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate-and-scale ``q`` ``(batch, seqlen, q_heads, head_dim)`` and ``k`` at integer ``positions``
    ``(seqlen,)`` / ``(batch, seqlen)``.

    >>> import torch, ropekit
    >>> q, k = apply_xpos(torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8), ropekit.RopeConfig(head_dim=8),
    ...                   torch.arange(4))
    >>> q.shape
    torch.Size([1, 4, 2, 8])
    """
    cq, sq, ck, sk = xpos_cos_sin(cfg, positions, scale_base=scale_base, center=center)
    return (rotate_gathered(q, cq, sq, layout=cfg.layout), rotate_gathered(k, ck, sk, layout=cfg.layout))
