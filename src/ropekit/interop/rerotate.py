"""KV re-rotation: turn keys cached under one RoPE config into keys under another with one rotation.

A key rotated under ``old`` is ``a_old R(p theta_old) k``; under ``new`` it is ``a_new R(p theta_new) k``,
so ``k_new = (a_new / a_old) R(p (theta_new - theta_old)) k_old`` (rotations about the same pairs commute).
The delta angle is formed in float64 from the float64 frequencies, never from two rounded tables.
When the two configs pair channels differently (layout or rotary_dim differ) there is no single delta
rotation; the key is un-rotated under ``old`` and rotated under ``new`` instead (still no recompute from x).
"""

from __future__ import annotations

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.reference import rotate_gathered
from ropekit.core.tables import angles
from ropekit.core.validation import check_positions

__all__ = ["rerotate"]


def _gathered(positions: torch.Tensor, inv: torch.Tensor, scale: float, sign: float = 1.0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    ang = angles(inv, positions) * sign
    return (ang.cos() * scale).to(torch.float32), (ang.sin() * scale).to(torch.float32)


def rerotate(
    k: torch.Tensor,
    positions: torch.Tensor,
    *,
    old: RopeConfig,
    new: RopeConfig,
    old_seq_len: int | None = None,
    new_seq_len: int | None = None,
) -> torch.Tensor:
    """Keys ``k`` ``(batch, seqlen, kv_heads, head_dim)`` rotated under ``old`` at integer ``positions``
    (``(seqlen,)`` or ``(batch, seqlen)``) -> the same keys rotated under ``new``.

    ``old_seq_len`` / ``new_seq_len``: the sequence length each config's frequencies followed (dynamic NTK,
    LongRoPE); with ``old is new`` this re-rotates across a frequency change such as LongRoPE's switch.

    >>> import torch, ropekit
    >>> a = ropekit.RopeConfig(head_dim=8, base=1e4)
    >>> b = a.replace(scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=16))
    >>> k, pos = torch.randn(1, 5, 2, 8), torch.arange(5)
    >>> ka = ropekit.core.rotate_gathered(k, *a.cos_sin(pos))
    >>> torch.allclose(rerotate(ka, pos, old=a, new=b), ropekit.core.rotate_gathered(k, *b.cos_sin(pos)), atol=1e-5)
    True
    """
    for name, c in (("old", old), ("new", new)):
        if not isinstance(c, RopeConfig):
            raise TypeError(f"{name} must be a ropekit.RopeConfig, got {type(c).__name__}.")
    if old.head_dim != new.head_dim:
        raise ValueError(f"old and new must share head_dim, got {old.head_dim} and {new.head_dim}.")
    if not isinstance(k, torch.Tensor) or not k.is_floating_point() or k.dim() != 4:
        raise ValueError("k must be a floating (batch, seqlen, kv_heads, head_dim) tensor.")
    if k.shape[-1] != old.head_dim:
        raise ValueError(f"k head_dim {k.shape[-1]} does not match the configs' head_dim={old.head_dim}.")
    check_positions(positions)
    if positions.shape not in ((k.shape[1],), (k.shape[0], k.shape[1])):
        raise ValueError(f"positions must be (seqlen,) or (batch, seqlen) for k of shape {tuple(k.shape)}.")
    inv_old, inv_new = old.inv_freq(old_seq_len), new.inv_freq(new_seq_len)
    a_old, a_new = old.attention_factor, new.attention_factor
    if old.layout == new.layout and old.rotary_dim == new.rotary_dim:
        cos, sin = _gathered(positions, inv_new.to(torch.float64) - inv_old.to(torch.float64), a_new / a_old)
        return rotate_gathered(k, cos.to(k.device), sin.to(k.device), layout=new.layout)
    cos, sin = _gathered(positions, inv_old, 1.0 / a_old, sign=-1.0)  # the inverse rotation
    plain = rotate_gathered(k, cos.to(k.device), sin.to(k.device), layout=old.layout)
    cos, sin = _gathered(positions, inv_new, a_new)
    return rotate_gathered(plain, cos.to(k.device), sin.to(k.device), layout=new.layout)
