"""Checkpoint layout permutation: reorder q/k projection rows between pair layouts.

``"half"`` (NeoX / HF Llama) pairs channel i with i + r/2, ``"interleaved"`` (GPT-J / llama.cpp NORM
mode / Meta's original Llama) pairs 2i with 2i+1, r = rotary_dim. Rotating the output of a projection
whose rows were permuted with :func:`permute_qk` in the ``dst`` layout equals rotating the original
projection's output in the ``src`` layout and permuting its channels: the attention scores are identical.
"""

from __future__ import annotations

import torch

from ropekit.core.reference import LAYOUTS
from ropekit.core.validation import check_choice, check_positive_int, check_rotary_dim

__all__ = ["layout_permutation", "permute_qk"]


def layout_permutation(head_dim: int, src: str = "interleaved", dst: str = "half", rotary_dim: int | None = None
                       ) -> torch.Tensor:
    """Index ``perm`` ``(head_dim,)`` with ``x_dst = x_src[..., perm]`` for one head; channels at and after
    ``rotary_dim`` (partial rotary) pass through.

    >>> layout_permutation(6, "interleaved", "half").tolist()
    [0, 2, 4, 1, 3, 5]
    >>> layout_permutation(6, "half", "interleaved", rotary_dim=4).tolist()
    [0, 2, 1, 3, 4, 5]
    """
    check_positive_int("head_dim", head_dim)
    check_choice("src", src, LAYOUTS)
    check_choice("dst", dst, LAYOUTS)
    rd = check_rotary_dim(head_dim if rotary_dim is None else rotary_dim, head_dim)
    perm = torch.arange(head_dim)
    if src == dst:
        return perm
    # half[j] = inter[2j], half[r/2 + j] = inter[2j + 1]
    to_half = torch.cat((torch.arange(0, rd, 2), torch.arange(1, rd, 2)))
    perm[:rd] = to_half if dst == "half" else torch.argsort(to_half)
    return perm


def permute_qk(
    weight_or_bias: torch.Tensor,
    n_heads: int,
    head_dim: int,
    src: str = "interleaved",
    dst: str = "half",
    rotary_dim: int | None = None,
    *,
    dim: int = 0,
) -> torch.Tensor:
    """Reorder the output rows of a q or k projection from the ``src`` pair layout to ``dst``.

    ``weight_or_bias``: ``(n_heads * head_dim, in_features)`` weight, ``(n_heads * head_dim,)`` bias, or a
    LoRA B ``(n_heads * head_dim, r)``; ``dim`` names the output axis. GQA: pass the kv-head count for k.
    ``rotary_dim``: rotated channels per head (partial rotary; the rest keep their order). Returns a new tensor.

    >>> import torch
    >>> w = torch.arange(8.0)[:, None]          # 2 heads x head_dim 4, one input feature
    >>> permute_qk(w, 2, 4).flatten().tolist()   # interleaved -> half, per head
    [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
    """
    if not isinstance(weight_or_bias, torch.Tensor):
        raise TypeError(f"weight_or_bias must be a torch.Tensor, got {type(weight_or_bias).__name__}.")
    check_positive_int("n_heads", n_heads)
    perm = layout_permutation(head_dim, src, dst, rotary_dim)
    if not -weight_or_bias.dim() <= dim < weight_or_bias.dim():
        raise ValueError(f"dim must index one of the tensor's {weight_or_bias.dim()} dims, got {dim}.")
    rows = weight_or_bias.shape[dim]
    if rows != n_heads * head_dim:
        raise ValueError(
            f"weight_or_bias has {rows} rows along dim {dim}, expected n_heads * head_dim = {n_heads} * {head_dim} = "
            f"{n_heads * head_dim}; for a GQA k projection pass the kv-head count as n_heads."
        )
    index = (torch.arange(n_heads)[:, None] * head_dim + perm).reshape(-1).to(weight_or_bias.device)
    return weight_or_bias.index_select(dim, index)
