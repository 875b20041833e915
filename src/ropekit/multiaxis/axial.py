"""N-D rotary embeddings for images and video (Heo et al. 2024, "Rotary Position Embedding for Vision
Transformer"): RoPE-Axial with fixed per-axis frequencies, RoPE-Mixed with learnable per-head frequencies.

Coordinates enter as ``(..., seqlen, n_axes)`` (e.g. (row, col) patch indices, or (t, row, col)); they may
be fractional (resolution interpolation) and are always turned into angles in float64.
Tensors to rotate are ``(batch, seqlen, heads, head_dim)``; pairs follow ``layout`` ("half" or "interleaved").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ropekit.core.reference import LAYOUTS, rotate_gathered
from ropekit.core.validation import check_choice, check_positive, check_positive_int, check_rotary_dim

__all__ = ["RoPEMixed", "apply_axial", "axial_cos_sin", "axial_inv_freq"]


def _check_coords(coords: torch.Tensor, n_axes: int) -> None:
    if not isinstance(coords, torch.Tensor) or coords.is_complex() or coords.dtype == torch.bool:
        raise TypeError("coords must be a real (int or float) tensor of shape (..., seqlen, n_axes).")
    if coords.dim() < 2 or coords.shape[-1] != n_axes:
        raise ValueError(f"coords must be (..., seqlen, n_axes={n_axes}), got {tuple(coords.shape)}.")


def axial_inv_freq(rotary_dim: int, n_axes: int = 2, base: float = 100.0) -> torch.Tensor:
    """Float64 ``(n_axes, rotary_dim // (2 n_axes))`` frequencies: every axis gets the same ladder
    ``base ** (-t / m)``, t < m = rotary_dim // (2 n_axes) (Heo et al. use base 100 for images).

    >>> axial_inv_freq(8, 2, base=100.0).tolist()
    [[1.0, 0.1], [1.0, 0.1]]
    """
    check_positive_int("n_axes", n_axes)
    check_rotary_dim(rotary_dim, rotary_dim)
    check_positive("base", base)
    if (rotary_dim // 2) % n_axes:
        raise ValueError(f"rotary_dim // 2 = {rotary_dim // 2} pairs must split evenly over n_axes={n_axes}.")
    m = rotary_dim // 2 // n_axes
    ladder = base ** (-torch.arange(m, dtype=torch.float64) / m)
    return ladder.expand(n_axes, m).clone()


def axial_cos_sin(coords: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 ``(..., seqlen, n_axes * m)`` cos/sin: axis a's angles ``coords[..., a] * inv_freq[a]``
    concatenated axis by axis. ``inv_freq``: ``(n_axes, m)``."""
    if inv_freq.dim() != 2:
        raise ValueError(f"inv_freq must be (n_axes, pairs_per_axis), got {tuple(inv_freq.shape)}.")
    _check_coords(coords, inv_freq.shape[0])
    ang = coords.to(torch.float64)[..., :, None] * inv_freq.to(coords.device, torch.float64)
    ang = ang.flatten(-2)
    return ang.cos().to(torch.float32), ang.sin().to(torch.float32)


def apply_axial(
    q: torch.Tensor, k: torch.Tensor | None, coords: torch.Tensor, inv_freq: torch.Tensor, *, layout: str = "half"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RoPE-Axial: rotate ``q``/``k`` ``(batch, seqlen, heads, head_dim)`` at ``coords`` ``(seqlen, n_axes)``
    or ``(batch, seqlen, n_axes)``; the leading ``2 * inv_freq.numel()`` channels rotate.

    >>> import torch
    >>> rows, cols = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
    >>> coords = torch.stack((rows, cols), -1).reshape(12, 2)       # a 3 x 4 patch grid
    >>> q, k = apply_axial(torch.randn(1, 12, 2, 16), torch.randn(1, 12, 2, 16), coords, axial_inv_freq(16))
    >>> q.shape
    torch.Size([1, 12, 2, 16])
    """
    check_choice("layout", layout, LAYOUTS)
    cos, sin = axial_cos_sin(coords, inv_freq)
    q2 = rotate_gathered(q, cos.to(q.device), sin.to(q.device), layout=layout)  # type: ignore[arg-type]
    k2 = None if k is None else rotate_gathered(k, cos.to(k.device), sin.to(k.device), layout=layout)  # type: ignore[arg-type]
    return q2, k2


class RoPEMixed(nn.Module):
    """RoPE-Mixed: learnable frequencies per head and pair, mixing all axes:
    angle[h, t] = sum_a coords[a] * freqs[h, t, a].

    Initialised as in Heo et al.: magnitudes ``base ** (-t / pairs)`` pointing in a random direction per
    head (directions of successive pairs a quarter turn apart), so at init every head sees a rotated
    axial embedding. Gradients flow to ``freqs`` through float64 angles.

    >>> import torch
    >>> rope = RoPEMixed(head_dim=16, heads=2, n_axes=2)
    >>> q = torch.randn(1, 6, 2, 16, requires_grad=True)
    >>> q2, _ = rope(q, None, torch.randint(0, 4, (6, 2)))
    >>> q2.sum().backward(); rope.freqs.grad.shape
    torch.Size([2, 8, 2])
    """

    def __init__(self, head_dim: int, heads: int, n_axes: int = 2, *, base: float = 10.0, layout: str = "half",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_rotary_dim(head_dim, head_dim)
        check_positive_int("heads", heads)
        check_positive_int("n_axes", n_axes)
        check_positive("base", base)
        self.layout = check_choice("layout", layout, LAYOUTS)
        pairs = head_dim // 2
        mag = base ** (-torch.arange(pairs, dtype=torch.float64) / pairs)
        phase = torch.rand(heads, 1, generator=generator, dtype=torch.float64) * 2 * math.pi
        phase = phase + torch.arange(pairs, dtype=torch.float64) * (math.pi / 2)
        if n_axes == 1:
            direction = torch.ones(heads, pairs, 1, dtype=torch.float64)
        else:  # a unit direction in the first two axes; further axes (time) start at the axial ladder
            direction = torch.zeros(heads, pairs, n_axes, dtype=torch.float64)
            direction[..., 0], direction[..., 1] = phase.cos(), phase.sin()
            direction[..., 2:] = 1.0
        self.freqs = nn.Parameter((mag[None, :, None] * direction).to(torch.float32))

    def cos_sin(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 per-head ``(..., seqlen, heads, pairs)`` cos/sin at ``coords`` ``(..., seqlen, n_axes)``."""
        _check_coords(coords, self.freqs.shape[-1])
        ang = torch.einsum("...a,hta->...ht", coords.to(torch.float64), self.freqs.to(torch.float64))
        return ang.cos().to(torch.float32), ang.sin().to(torch.float32)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor | None, coords: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rotate ``q`` and ``k`` ``(batch, seqlen, heads, head_dim)`` (same head count: per-head frequencies)."""
        heads = self.freqs.shape[0]
        for name, t in (("q", q), ("k", k)):
            if t is not None and (t.dim() != 4 or t.shape[2] != heads or t.shape[3] != 2 * self.freqs.shape[1]):
                raise ValueError(
                    f"{name} must be (batch, seqlen, heads={heads}, head_dim={2 * self.freqs.shape[1]}), "
                    f"got {tuple(t.shape)}."
                )
        cos, sin = self.cos_sin(coords)
        # treat heads as the "seqlen" axis of the oracle so each head gets its own angles
        q2 = rotate_gathered(q.unsqueeze(-2), cos.to(q.device), sin.to(q.device), layout=self.layout).squeeze(-2)  # type: ignore[arg-type]
        k2 = None
        if k is not None:
            k2 = rotate_gathered(k.unsqueeze(-2), cos.to(k.device), sin.to(k.device), layout=self.layout).squeeze(-2)  # type: ignore[arg-type]
        return q2, k2
