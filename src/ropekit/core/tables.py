"""Precise cos/sin: angles formed in float64, rounded once to float32.

Why float64: at position p ~ 1e6 an fp32 product ``p * inv_freq`` carries an absolute error near
0.06 rad; the float64 product is exact to ~1e-10 rad, so the only error left is the final fp32
rounding of cos/sin (<= 6e-8). Positions and angles are never formed in bf16/fp16.
"""

from __future__ import annotations

import torch

from ropekit.core.validation import check_positions

__all__ = ["angles", "cos_sin", "cos_sin_table"]


def _fp64_device(device: torch.device) -> torch.device:
    # MPS has no float64; build there on the CPU and move the fp32 result.
    return torch.device("cpu") if device.type == "mps" else device


def angles(inv_freq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Float64 angles ``positions[..., None] * inv_freq``; shape ``positions.shape + (rotary_dim // 2,)``."""
    check_positions(positions)
    dev = _fp64_device(positions.device)
    return positions.to(dev, torch.float64)[..., None] * inv_freq.to(dev, torch.float64)


def cos_sin(
    inv_freq: torch.Tensor, positions: torch.Tensor, attention_factor: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-width float32 ``(cos, sin)`` at integer ``positions``, both multiplied by ``attention_factor``.

    >>> import torch
    >>> c, s = cos_sin(torch.tensor([1.0, 0.5], dtype=torch.float64), torch.arange(3))
    >>> c.shape, c.dtype
    (torch.Size([3, 2]), torch.float32)
    """
    ang = angles(inv_freq, positions)
    cos = (ang.cos() * attention_factor).to(torch.float32)
    sin = (ang.sin() * attention_factor).to(torch.float32)
    return cos.to(positions.device), sin.to(positions.device)


def cos_sin_table(
    inv_freq: torch.Tensor,
    length: int,
    attention_factor: float = 1.0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(length, rotary_dim // 2)`` float32 cos and sin tables for positions ``0 .. length-1``."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an int >= 1, got {length!r}.")
    pos = torch.arange(length, device=device if device is not None else inv_freq.device)
    return cos_sin(inv_freq, pos, attention_factor)
