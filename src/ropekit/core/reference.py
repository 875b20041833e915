"""The reference rotation: plain PyTorch, the oracle every fast path is tested against.

Two functions, two jobs: :func:`rotate_qk_ref` is the oracle of :func:`ropekit.functional.apply_rotary`
(same arguments; it is ``backend="reference"``); :func:`rotate_gathered` is the rotation itself, by
cos/sin already gathered per token (multi-axis encodings and re-rotation call it directly).

Tensors enter as ``(batch, seqlen, heads, head_dim)`` (or packed ``(total_tokens, heads, head_dim)``
with ``cu_seqlens``). Layouts: ``"half"`` pairs channel i with i + d/2 (NeoX / HF ``rotate_half``),
``"interleaved"`` pairs 2i with 2i+1 (GPT-J). Only the first ``rotary_dim = 2 * cos.shape[-1]``
channels rotate; the tail passes through. Math is done in float32 (float64 for float64 inputs) and
rounded once to the input dtype.
"""

from __future__ import annotations

from typing import Literal

import torch

from ropekit.core.positions import token_positions
from ropekit.core.validation import check_choice, check_rotary_dim

__all__ = ["LAYOUTS", "Layout", "check_qk", "check_tables", "rotate_gathered", "rotate_qk_ref"]

Layout = Literal["half", "interleaved"]
LAYOUTS: tuple[str, ...] = ("half", "interleaved")


def rotate_gathered(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, layout: Layout = "half"
) -> torch.Tensor:
    """Rotate ``x`` by gathered angles.

    ``x``: ``(..., seqlen, heads, head_dim)``; ``cos``/``sin``: broadcastable to
    ``(..., seqlen, rotary_dim // 2)`` (half width, attention factor already applied).

    >>> import torch
    >>> x = torch.randn(1, 3, 2, 8)
    >>> c, s = torch.ones(3, 4), torch.zeros(3, 4)          # zero angle: identity
    >>> torch.equal(rotate_gathered(x, c, s), x)
    True
    """
    check_choice("layout", layout, LAYOUTS)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor, got {x.dtype}.")
    half = cos.shape[-1]
    check_rotary_dim(2 * half, x.shape[-1])
    calc = torch.promote_types(x.dtype, torch.float32)
    xr = x[..., : 2 * half].to(calc)
    c = cos.to(calc).unsqueeze(-2)  # broadcast over heads
    s = sin.to(calc).unsqueeze(-2)
    if layout == "half":
        x1, x2 = xr[..., :half], xr[..., half:]
        out = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)
    else:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        out = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).flatten(-2)
    out = out.to(x.dtype)
    if 2 * half == x.shape[-1]:
        return out
    return torch.cat((out, x[..., 2 * half :]), dim=-1)


def check_tables(cos_table: object, sin_table: object, head_dim: int, *, float_only: bool = False) -> None:
    """``(table_len, rotary_dim // 2)`` cos/sin tables of one shape (and, for the fused kernels, float32/64)."""
    for name, t in (("cos_table", cos_table), ("sin_table", sin_table)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}.")
        if float_only and t.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"{name} must be float32 (or float64): a {t.dtype} table loses the angle precision "
                "RoPE needs; build it with ropekit.core.tables.cos_sin_table."
            )
    assert isinstance(cos_table, torch.Tensor) and isinstance(sin_table, torch.Tensor)
    if cos_table.shape != sin_table.shape or cos_table.dim() != 2:
        raise ValueError(
            f"cos_table and sin_table must both be (table_len, rotary_dim // 2); got "
            f"{tuple(cos_table.shape)} and {tuple(sin_table.shape)}."
        )
    if float_only and cos_table.dtype != sin_table.dtype:
        raise TypeError(f"cos_table and sin_table dtypes differ: {cos_table.dtype} and {sin_table.dtype}.")
    check_rotary_dim(2 * cos_table.shape[-1], head_dim)


def check_qk(q: torch.Tensor, k: torch.Tensor | None, *, packed: bool) -> None:
    """Shape/dtype checks shared by every backend."""
    want = 3 if packed else 4
    shape_doc = "(total_tokens, heads, head_dim)" if packed else "(batch, seqlen, heads, head_dim)"
    for name, t in (("q", q), ("k", k)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}.")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor (fp32/bf16/fp16/fp64), got {t.dtype}.")
        if t.dim() != want:
            raise ValueError(f"{name} must be {shape_doc}, got shape {tuple(t.shape)}.")
    if k is not None:
        if k.shape[-1] != q.shape[-1]:
            raise ValueError(f"q and k head_dim differ: q has {q.shape[-1]}, k has {k.shape[-1]}.")
        if k.shape[:-2] != q.shape[:-2]:
            raise ValueError(
                f"q and k must agree on every dim but heads; got {tuple(q.shape)} and {tuple(k.shape)}."
            )


def rotate_qk_ref(
    q: torch.Tensor,
    k: torch.Tensor | None,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
    *,
    positions: torch.Tensor | None = None,
    offset: int | torch.Tensor = 0,
    cu_seqlens: torch.Tensor | None = None,
    layout: Layout = "half",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotate q and k by table lookups: the oracle of :func:`ropekit.functional.apply_rotary`.

    ``q``: ``(batch, seqlen, q_heads, head_dim)``, ``k``: ``(batch, seqlen, kv_heads, head_dim)`` (or
    ``None``); packed ``(total_tokens, heads, head_dim)`` when ``cu_seqlens`` is given.
    ``cos_table``/``sin_table``: ``(table_len, rotary_dim // 2)`` float32.
    Token positions: ``positions`` ``(seqlen,)``/``(batch, seqlen)``, or contiguous from ``offset``
    (int or ``(batch,)``/``(n_seqs,)`` tensor); with ``cu_seqlens`` each sequence restarts at 0.

    >>> import torch
    >>> from ropekit.core.tables import cos_sin_table
    >>> cos, sin = cos_sin_table(10000.0 ** -torch.arange(0, 1, 0.25, dtype=torch.float64), 16)
    >>> q2, _ = rotate_qk_ref(torch.randn(1, 4, 2, 8), None, cos, sin, offset=3)
    >>> q2.shape
    torch.Size([1, 4, 2, 8])
    """
    check_qk(q, k, packed=cu_seqlens is not None)
    check_tables(cos_table, sin_table, q.shape[-1])
    where = token_positions(q.shape, positions=positions, offset=offset, cu_seqlens=cu_seqlens, device=q.device,
                            table_len=cos_table.shape[0])
    pos = where.expand().to(cos_table.device)
    cos, sin = cos_table[pos].to(q.device), sin_table[pos].to(q.device)
    q_out = rotate_gathered(q, cos, sin, layout=layout)
    k_out = None if k is None else rotate_gathered(k, cos, sin, layout=layout)
    return q_out, k_out
