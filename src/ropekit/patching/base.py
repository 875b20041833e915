"""The machinery every model family shares: swap a HF model's rotary module for ropekit's, route the
attention's q/k rotation through :class:`ropekit.RotaryEmbedding`, and undo both exactly.

What is patched (per model instance, never at import, never on the class):

- ``model.base_model.rotary_emb`` is replaced by :class:`HFRotaryAdapter`. It still returns HF's
  ``(cos, sin)`` (full width, model dtype) so unpatched consumers keep working, computed from ropekit's
  float64 angles, and it carries the token positions for the attention.
- each attention module's ``forward`` is shadowed by an instance attribute that projects q/k/v as the
  family does, rotates q and k with ``RotaryEmbedding`` on the chosen backend (``backend="hf"`` keeps
  HF's ``apply_rotary_pos_emb`` instead), then runs HF's attention interface unchanged.

Frequencies that depend on the current length (dynamic NTK, LongRoPE) follow ``max(position_ids) + 1``
of every forward pass, as transformers does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ropekit.core.config import RopeConfig
from ropekit.core.scaling import Scaling
from ropekit.modules.rotary import RotaryEmbedding

__all__ = ["Family", "HFRotaryAdapter", "PatchHandle", "RotaryEmbeddings", "attention_forward"]

#: (module, hidden_states (batch, seqlen, hidden)) -> q, k, v each (batch, seqlen, heads, head_dim)
ProjectFn = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Family:
    """How one HF model family projects q/k/v and which sliding window its attention passes on.

    ``hf_module``/``attention_name`` name the HF modeling module and attention class; they are imported
    only when a model is patched.
    """

    name: str
    model_types: tuple[str, ...]
    hf_module: str  # e.g. "transformers.models.llama.modeling_llama"
    attention_name: str  # e.g. "LlamaAttention"
    project: ProjectFn
    sliding_window: Callable[[nn.Module], int | None]

    def _hf(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.hf_module), attr)

    def attention_class(self) -> type:
        return self._hf(self.attention_name)

    def hf_apply(self) -> Callable[..., Any]:
        """HF's ``apply_rotary_pos_emb`` for this family."""
        return self._hf("apply_rotary_pos_emb")

    def eager(self) -> Callable[..., Any]:
        """HF's eager attention for this family."""
        return self._hf("eager_attention_forward")


class RotaryEmbeddings(tuple):
    """HF's ``(cos, sin)`` pair (``(batch, seqlen, head_dim)``, model dtype) plus ``positions``."""

    positions: torch.Tensor

    def __new__(cls, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor) -> RotaryEmbeddings:
        obj = super().__new__(cls, (cos, sin))
        obj.positions = positions
        return obj


class HFRotaryAdapter(nn.Module):
    """Drop-in for a HF ``*RotaryEmbedding``: ``forward(x, position_ids) -> (cos, sin)`` from ropekit."""

    def __init__(self, config: RopeConfig, backend: str) -> None:
        super().__init__()
        self.rope = RotaryEmbedding(config, backend=backend)
        self.config = config

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> RotaryEmbeddings:
        pos = position_ids.long()
        cos, sin = self.rope.cos_sin(pos)  # float32 (batch, seqlen, rotary_dim // 2), from float64 angles
        cos_full = torch.cat((cos, cos), dim=-1).to(x.dtype)  # HF's duplicated half layout
        sin_full = torch.cat((sin, sin), dim=-1).to(x.dtype)
        return RotaryEmbeddings(cos_full, sin_full, pos)


def attention_forward(family: Family, backend: str) -> Callable[..., tuple[torch.Tensor, Any]]:
    """The replacement ``forward`` for one family's attention modules (bound per instance)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    hf_apply = family.hf_apply()
    eager = family.eager()

    def forward(
        self: nn.Module,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, Any]:
        input_shape = hidden_states.shape[:-1]
        q, k, v = family.project(self, hidden_states)  # (batch, seqlen, heads, head_dim), "half" pairs
        rope = getattr(self, "_ropekit_rope", None)
        if backend == "hf" or rope is None or not isinstance(position_embeddings, RotaryEmbeddings):
            cos, sin = position_embeddings
            q, k = hf_apply(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        else:
            pos = position_embeddings.positions
            if pos.dim() == 2 and pos.shape[0] == 1 and q.shape[0] > 1:
                pos = pos[0]  # one position row shared by the batch
            # in place is safe: q/k are fresh projections; under autograd keep HF's out-of-place semantics
            q, k = rope(q, k, positions=pos, inplace=not torch.is_grad_enabled())
            # (batch, heads, seqlen, head_dim), contiguous like HF's apply output: the attention kernels then see
            # the same strides as in the stock model
            q, k = q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous()
        v = v.transpose(1, 2)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        attn_fn = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager)
        out, weights = attn_fn(
            self, q, k, v, attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            sliding_window=family.sliding_window(self),
            **kwargs,
        )
        out = self.o_proj(out.reshape(*input_shape, -1).contiguous())
        return out, weights

    return forward


class PatchHandle:
    """An active patch; :meth:`undo` (or leaving the ``with`` block) restores the model exactly.

    >>> with ropekit.patch(model, ropekit.YaRN(factor=2.0, original_max_position_embeddings=8192)):  # doctest: +SKIP
    ...     logits = model(ids).logits
    """

    def __init__(self, model: nn.Module, config: RopeConfig, family: Family, backend: str) -> None:
        self.model = model
        self.config = config
        self.family = family
        self.backend = backend
        self.active = False
        self._base: nn.Module | None = None
        self._orig_rotary: nn.Module | None = None
        self._attn: list[tuple[nn.Module, bool, Any]] = []

    def __repr__(self) -> str:
        state = "active" if self.active else "undone"
        return f"PatchHandle({self.family.name}, method={self.config.method}, backend={self.backend!r}, {state})"

    def _apply(self) -> None:
        base = self.model.base_model
        self._base, self._orig_rotary = base, base.rotary_emb
        adapter = HFRotaryAdapter(self.config, "reference" if self.backend == "hf" else self.backend)
        device = next((b.device for b in self._orig_rotary.buffers()), None)
        if device is not None:
            adapter.to(device)
        forward = attention_forward(self.family, self.backend)
        attn_cls = self.family.attention_class()
        try:
            base.rotary_emb = adapter
            for module in self.model.modules():
                if isinstance(module, attn_cls):
                    had = "forward" in module.__dict__
                    self._attn.append((module, had, module.__dict__.get("forward")))
                    module.forward = forward.__get__(module)
                    # plain instance attribute, not a registered submodule: state_dict / named_modules unchanged
                    object.__setattr__(module, "_ropekit_rope", adapter.rope)
        except BaseException:
            self.undo()
            raise
        self.model._ropekit_patch = self
        self.active = True

    def undo(self) -> None:
        """Restore the original rotary module and attention forwards (idempotent)."""
        for module, had, fwd in reversed(self._attn):
            if had:
                module.forward = fwd
            else:
                module.__dict__.pop("forward", None)
            module.__dict__.pop("_ropekit_rope", None)
        self._attn.clear()
        if self._base is not None and self._orig_rotary is not None:
            self._base.rotary_emb = self._orig_rotary
        self._base = self._orig_rotary = None
        if getattr(self.model, "_ropekit_patch", None) is self:
            del self.model._ropekit_patch
        self.active = False

    def __enter__(self) -> PatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()


def resolve_config(model: nn.Module, cfg_or_scaling: RopeConfig | Scaling | None) -> RopeConfig:
    """``RopeConfig`` as given, the model's own with ``scaling`` swapped in, or the model's own (``None``)."""
    own = RopeConfig.from_hf(model.config)
    if cfg_or_scaling is None:
        return own
    if isinstance(cfg_or_scaling, Scaling):
        return own.replace(scaling=cfg_or_scaling)
    if isinstance(cfg_or_scaling, RopeConfig):
        if cfg_or_scaling.head_dim != own.head_dim:
            raise ValueError(
                f"cfg.head_dim={cfg_or_scaling.head_dim} does not match the model's head_dim={own.head_dim}."
            )
        return cfg_or_scaling
    raise TypeError(
        f"cfg_or_scaling must be a ropekit.RopeConfig, a scaling config (e.g. ropekit.YaRN(...)) or None, "
        f"got {type(cfg_or_scaling).__name__}."
    )
