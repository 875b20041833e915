"""M-RoPE (multimodal RoPE): each frequency pair follows one of three position axes (t, h, w).

Positions enter as ``(3, batch, seqlen)`` ints (text tokens repeat one position on all three axes, so
M-RoPE on text equals 1-D RoPE). Two assignments of frequency pairs to axes exist:

- sectioned (Qwen2-VL): ``mrope_section = [s_t, s_h, s_w]`` splits the ``rotary_dim // 2`` pairs into
  contiguous chunks, chunk j following axis ``j % 3``;
- interleaved (Qwen3-VL): pair k follows h if ``k % 3 == 1 and k < 3 s_h``, w if ``k % 3 == 2 and
  k < 3 s_w``, else t.

Angles are formed in float64 from the config's float64 frequencies (scaling and attention factor included).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.reference import rotate_gathered
from ropekit.core.validation import check_positions

__all__ = ["apply_mrope", "mrope_axis_of_pair", "mrope_cos_sin"]


def _check_section(section: Sequence[int], n_pairs: int, interleaved: bool) -> list[int]:
    if isinstance(section, (str, bytes)) or not hasattr(section, "__iter__"):
        raise TypeError(f"mrope_section must be a sequence of ints, got {type(section).__name__}.")
    sec = list(section)
    if not sec or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in sec):
        raise ValueError(f"mrope_section must be non-negative ints, got {sec}.")
    if interleaved and len(sec) != 3:
        raise ValueError(f"interleaved M-RoPE takes 3 sections (t, h, w), got {len(sec)}.")
    if sum(sec) != n_pairs:
        raise ValueError(f"mrope_section must sum to rotary_dim // 2 = {n_pairs}, got sum({sec}) = {sum(sec)}.")
    return sec


def mrope_axis_of_pair(section: Sequence[int], *, interleaved: bool = False) -> torch.Tensor:
    """``(sum(section),)`` int64: the position axis (0 = t, 1 = h, 2 = w) each frequency pair follows.

    >>> mrope_axis_of_pair([2, 1, 1]).tolist(), mrope_axis_of_pair([2, 1, 1], interleaved=True).tolist()
    ([0, 0, 1, 2], [0, 1, 2, 0])
    """
    sec = _check_section(section, sum(section) if hasattr(section, "__iter__") else -1, interleaved)
    n = sum(sec)
    if not interleaved:
        chunks = torch.arange(len(sec)) % 3
        return torch.repeat_interleave(chunks, torch.tensor(sec, dtype=torch.long))
    k = torch.arange(n)
    axis = torch.zeros(n, dtype=torch.long)
    axis[(k % 3 == 1) & (k < 3 * sec[1])] = 1
    axis[(k % 3 == 2) & (k < 3 * sec[2])] = 2
    return axis


def mrope_cos_sin(
    cfg: RopeConfig,
    positions: torch.Tensor,
    section: Sequence[int],
    *,
    interleaved: bool = False,
    seq_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 ``(batch, seqlen, rotary_dim // 2)`` cos/sin for ``positions`` ``(3, batch, seqlen)``
    (a ``(batch, seqlen)`` text-only tensor is broadcast to all three axes).

    >>> import torch, ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=16)
    >>> pos = torch.arange(5).expand(3, 1, 5)                  # text: t = h = w
    >>> c, s = mrope_cos_sin(cfg, pos, [2, 3, 3])
    >>> torch.equal(c[0], cfg.cos_sin(torch.arange(5))[0])
    True
    """
    if not isinstance(cfg, RopeConfig):
        raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
    check_positions(positions)
    if positions.dim() == 2:
        positions = positions.expand(3, *positions.shape)
    if positions.dim() != 3 or positions.shape[0] != 3:
        raise ValueError(f"positions must be (3, batch, seqlen) or (batch, seqlen), got {tuple(positions.shape)}.")
    n_pairs = cfg.rotary_dim // 2  # type: ignore[operator]
    _check_section(section, n_pairs, interleaved)
    axis = mrope_axis_of_pair(section, interleaved=interleaved).to(positions.device)
    inv = cfg.inv_freq(seq_len).to(positions.device)
    # pick, per pair, the position of its axis: (batch, seqlen, n_pairs)
    pos = positions.permute(1, 2, 0).to(torch.float64)[..., axis]
    ang = pos * inv
    a = cfg.attention_factor
    return (ang.cos() * a).to(torch.float32), (ang.sin() * a).to(torch.float32)


def apply_mrope(
    q: torch.Tensor,
    k: torch.Tensor | None,
    cfg: RopeConfig,
    positions: torch.Tensor,
    section: Sequence[int],
    *,
    interleaved: bool = False,
    seq_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotate ``q`` ``(batch, seqlen, q_heads, head_dim)`` and ``k`` ``(batch, seqlen, kv_heads, head_dim)``
    with M-RoPE at ``positions`` ``(3, batch, seqlen)`` in ``cfg.layout``."""
    cos, sin = mrope_cos_sin(cfg, positions, section, interleaved=interleaved, seq_len=seq_len)
    cos, sin = cos.to(q.device), sin.to(q.device)
    q2 = rotate_gathered(q, cos, sin, layout=cfg.layout)
    k2 = None if k is None else rotate_gathered(k, cos, sin, layout=cfg.layout)
    return q2, k2
