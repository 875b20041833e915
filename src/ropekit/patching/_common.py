"""Pieces two or more families share (q/k/v projection shapes), kept out of the per-family files."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["project_plain", "project_qk_norm"]


def _shape(module: nn.Module, hidden_states: torch.Tensor) -> tuple[int, ...]:
    return (*hidden_states.shape[:-1], -1, module.head_dim)


def project_plain(module: nn.Module, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v ``(batch, seqlen, heads, head_dim)`` as Llama / Mistral / Qwen2 project them."""
    shape = _shape(module, hidden_states)
    return (
        module.q_proj(hidden_states).view(shape),
        module.k_proj(hidden_states).view(shape),
        module.v_proj(hidden_states).view(shape),
    )


def project_qk_norm(
    module: nn.Module, hidden_states: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Qwen3: per-head RMSNorm on q and k before the rotation."""
    shape = _shape(module, hidden_states)
    return (
        module.q_norm(module.q_proj(hidden_states).view(shape)),
        module.k_norm(module.k_proj(hidden_states).view(shape)),
        module.v_proj(hidden_states).view(shape),
    )
