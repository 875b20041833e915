"""The fused-kernel attention path: the small table of families whose attention ropekit re-implements.

Everywhere else ropekit's tables feed the model's own rotation (:mod:`ropekit.patching.adapter`). For
these Llama-shaped attentions the rotation itself runs on ropekit's kernels (C on CPU, Triton on CUDA), in
place on the fresh projections. The replacement ``forward`` is an instance attribute, installed only
after :func:`ropekit.patching.verify.model_probe` shows it equals the stock forward (prefill and a
cached decode step) on the real model; if it does not, the tables path is used and the handle says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ropekit.patching.adapter import RotaryOutput

__all__ = ["FUSED_FAMILIES", "FusedFamily", "fused_forward"]


@dataclass(frozen=True)
class FusedFamily:
    """One attention class ropekit can run with its fused kernels."""

    attention_class: str  # HF class name, e.g. "LlamaAttention"
    qk_norm: bool  # per-head RMSNorm on q and k before the rotation (Qwen3)
    sliding_window: Callable[[nn.Module], int | None]  # what the stock forward passes to the attention interface


#: HF model_type -> its fused attention. A genuine-exceptions table: everything else uses the tables path.
FUSED_FAMILIES: dict[str, FusedFamily] = {
    "llama": FusedFamily("LlamaAttention", False, lambda m: None),
    "mistral": FusedFamily("MistralAttention", False, lambda m: getattr(m.config, "sliding_window", None)),
    "qwen2": FusedFamily("Qwen2Attention", False, lambda m: m.sliding_window),
    "qwen3": FusedFamily("Qwen3Attention", True, lambda m: m.sliding_window),
}


def fused_forward(family: FusedFamily) -> Callable[..., tuple[torch.Tensor, Any]]:
    """The replacement ``forward`` for ``family``'s attention modules (bound per instance)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def forward(
        self: nn.Module,
        hidden_states: torch.Tensor,
        position_embeddings: Any = None,
        attention_mask: torch.Tensor | None = None,
        cache: Any = None,
        past_key_values: Any = None,  # the pre-5.24 name of `cache`
        **kwargs: Any,
    ) -> tuple[torch.Tensor, Any]:
        if not isinstance(position_embeddings, RotaryOutput):
            # never fall back to HF's rotation silently: the adapter must have produced these
            raise RuntimeError(
                "ropekit's fused attention got position embeddings that ropekit's rotary adapter did not make; "
                "undo the patch and patch again."
            )
        cache = cache if cache is not None else past_key_values
        input_shape = hidden_states.shape[:-1]
        shape = (*input_shape, -1, self.head_dim)
        # (batch, seqlen, heads, head_dim), "half" pairs as HF Llama checkpoints store them
        q = self.q_proj(hidden_states).view(shape)
        k = self.k_proj(hidden_states).view(shape)
        v = self.v_proj(hidden_states).view(shape)
        if family.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        pos = position_embeddings.positions
        if pos.dim() == 2 and pos.shape[0] == 1 and q.shape[0] > 1:
            pos = pos[0]  # one position row shared by the batch
        # in place is safe on fresh projections; under autograd keep out-of-place semantics
        q, k = position_embeddings.rope(q, k, positions=pos, inplace=not torch.is_grad_enabled())
        q, k = q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous()  # the strides HF's apply gives
        v = v.transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, kwargs=kwargs)
        eager = _eager(type(self))
        attn_fn = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager)
        out, weights = attn_fn(
            self, q, k, v, attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            sliding_window=family.sliding_window(self),
            **kwargs,
        )
        return self.o_proj(out.reshape(*input_shape, -1).contiguous()), weights

    return forward


def _eager(cls: type) -> Callable[..., Any]:
    import importlib

    fn = getattr(importlib.import_module(cls.__module__), "eager_attention_forward", None)
    if fn is None:
        raise RuntimeError(f"{cls.__module__} has no eager_attention_forward; the fused path cannot run it.")
    return fn
