"""Run an extension method inside a patched Hugging Face model, through transformers' attention interface.

``ropekit.patch(model, ropekit.SelfExtend(...))`` first patches the model's *own* RoPE (verified against
stock, :mod:`ropekit.patching`), then, per model instance and reversibly:

- registers one attention function (:data:`ATTN_NAME`) in ``ALL_ATTENTION_FUNCTIONS`` and a mask function
  under the same name (it builds no n x n mask: the causal structure is computed per query chunk; it
  refuses padded batches, which the method's position maps would silently misread);
- points ``config._attn_implementation`` of the model's configs at it, and hangs on every attention
  module (found by ``layer_idx``) its method, its RopeConfig from the handle's plan, and the model's
  previous attention function (NoPE layers keep it);
- proves the routing on the model: with a method that changes nothing (ReRoPE with a window no probe
  reaches) the prefill and a cached decode step must equal the stock attention's.

The attention function receives q/k rotated by the model at their true positions and re-places them by
position differences (:func:`ropekit.extension.extended_attention` with ``rotated=True``). Positions
come from ``position_ids`` when the model passes them, else from the cache length; keys are the
contiguous positions ending at the newest query (full caches and sliding-window caches alike). Every
method decodes incrementally: the cache keeps keys rotated at true positions and each step re-places
them. ``undo()`` restores configs, modules and the RoPE patch exactly.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from ropekit.core.config import RopeConfig
from ropekit.extension.attention import extended_attention
from ropekit.extension.methods import Extension, ReRoPE

__all__ = ["ATTN_NAME", "ExtensionPatch", "install"]

ATTN_NAME = "ropekit_extension"
_STATE = "_ropekit_extension"  # attribute hung on each attention module while patched


class _Layer:
    """What one attention module runs while patched."""

    def __init__(self, method: Extension, cfg: RopeConfig | None, fallback: Any) -> None:
        self.method = method  # the extension config
        self.cfg = cfg  # the layer's RoPE (what the model rotated q/k with); None: NoPE layer
        self.fallback = fallback  # the model's previous attention function (NoPE layers, refusals)


def _positions(query: torch.Tensor, key: torch.Tensor, kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    n_q, n_k = query.shape[2], key.shape[2]
    pid = kwargs.get("position_ids")
    if isinstance(pid, torch.Tensor):
        pid = pid.reshape(-1, pid.shape[-1]) if pid.dim() > 1 else pid[None]
        if pid.shape[-1] != n_q or not bool((pid == pid[:1]).all()):
            raise ValueError("ropekit extension methods need the same positions for every batch row (no padding, "
                             f"no packing); got position_ids of shape {tuple(pid.shape)} for {n_q} queries.")
        q_pos = pid[0].long()
        if n_q > 1 and not bool((q_pos.diff() == 1).all()):
            raise ValueError("ropekit extension methods need consecutive query positions (no packed sequences).")
        end = int(q_pos[-1]) + 1
    else:
        end = n_k
        q_pos = torch.arange(n_k - n_q, n_k, device=query.device)
    start = end - n_k
    if start < 0:
        raise ValueError(f"the cache holds {n_k} keys but the newest query is at position {end - 1}.")
    return q_pos.to(query.device), torch.arange(start, end, device=query.device)


def _attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
               sliding_window: int | None = None, softcap: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    state: _Layer | None = getattr(module, _STATE, None)
    if state is None:
        raise ValueError(f"{type(module).__name__} is routed to {ATTN_NAME!r} but carries no ropekit extension "
                         "state (a patch undone by hand?); reload the model.")
    if state.cfg is None:  # a NoPE layer: no positions to re-place
        return state.fallback(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                              sliding_window=sliding_window, softcap=softcap, **kwargs)
    if dropout and module.training:
        raise ValueError("ropekit extension methods are inference-time; call model.eval() (attention dropout is on).")
    if getattr(module, "is_causal", True) is False:
        raise ValueError(f"{type(module).__name__} is not causal; extension methods need causal attention.")
    q_pos, k_pos = _positions(query, key, kwargs)
    out = extended_attention(query, key, value, state.method, state.cfg, q_pos=q_pos, k_pos=k_pos, rotated=True,
                             scale=scaling, softcap=softcap, sliding_window=sliding_window, mask=attention_mask)
    return out.transpose(1, 2).contiguous(), None


def _refuse_padding_mask(*, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> None:
    if attention_mask is not None and not bool(attention_mask.all()):
        raise ValueError("ropekit extension methods do not support padded batches (the attention mask has zeros); "
                         "run one sequence per call, or batch sequences of the same length.")
    return None


def _register() -> None:
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS.register(ATTN_NAME, _attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, _refuse_padding_mask)


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules()
            if isinstance(getattr(m, "layer_idx", None), int) and "Attention" in type(m).__name__
            and hasattr(m, "config")]


def _fallback(module: nn.Module, impl: str | None) -> Any:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if impl in (None, "eager"):
        if eager is None:
            raise ValueError(f"{type(module).__name__}: its module defines no eager_attention_forward to fall back to.")
        return eager
    return ALL_ATTENTION_FUNCTIONS[impl]


class ExtensionPatch:
    """An active extension patch: the RoPE patch (``.base``) plus the routed attention; ``undo()`` restores both.

    >>> with ropekit.patch(model, ropekit.ReRoPE(window=512)) as h:    # doctest: +SKIP
    ...     h.method
    ReRoPE(window=512)
    """

    def __init__(self, base: Any, method: Extension) -> None:
        self.base = base  # the PatchHandle of the model's own RoPE
        self.method = method
        self._configs: list[tuple[Any, Any]] = []
        self._modules: list[nn.Module] = []

    @property
    def model(self) -> nn.Module:
        return self.base.model

    @property
    def plan(self) -> Any:
        return self.base.plan

    @property
    def active(self) -> bool:
        return bool(self.base.active and self._modules)

    def describe(self) -> list[dict[str, Any]]:
        rows = self.base.describe()
        for r in rows:
            r["extension"] = None if r["rope"] is None else self.method.describe()
        return rows

    def __repr__(self) -> str:
        return f"ExtensionPatch({self.method!r}, {self.base!r})"

    def _set(self, method: Extension) -> None:
        for m in self._modules:
            getattr(m, _STATE).method = method

    def undo(self) -> None:
        """Restore the attention implementation, the modules and the RoPE patch (idempotent)."""
        for config, value in reversed(self._configs):
            config._attn_implementation_internal = value
        self._configs.clear()
        for m in self._modules:
            m.__dict__.pop(_STATE, None)
        self._modules.clear()
        if getattr(self.model, "_ropekit_patch", None) is self:
            self.model._ropekit_patch = self.base
        self.base.undo()

    def __enter__(self) -> ExtensionPatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()


def _contexts(plan: Any) -> set[int | None]:
    return {c.original_max_position_embeddings for c in plan.by_type.values() if c is not None}


def install(model: nn.Module, base: Any, method: Extension) -> ExtensionPatch:
    """Route ``model``'s attention through ``method`` on top of ``base`` (a PatchHandle of its own RoPE).

    Raises ``ValueError`` (and leaves the model as ``base`` found it, then undoes ``base``) when the
    method's parameters do not fit the model, the model's own RoPE depends on the sequence length, or the
    routed attention does not reproduce the stock attention on the probe.
    """
    from ropekit.patching.verify import PatchVerificationError, model_probe, outputs_close, where

    handle = ExtensionPatch(base, method)
    try:
        for ctx in _contexts(base.plan):
            method.check_context(ctx)
        for t, cfg in base.plan.by_type.items():
            if cfg is not None and cfg.scaling is not None and cfg.scaling.depends_on_seq_len:
                raise ValueError(f"layer type {t!r} runs {cfg.method!r} RoPE, whose frequencies follow the length; "
                                 f"{method.method} re-places positions under fixed frequencies and refuses it.")
            if cfg is not None:
                method.rope_at(cfg, 2 * (cfg.original_max_position_embeddings or 1))  # raises if it cannot apply
        modules = _attention_modules(model)
        if not modules:
            raise ValueError(f"{where(model)}: no attention module with a layer_idx; cannot route {method.method}.")
        _register()
        ref = model_probe(model)
        configs = {id(c): c for c in [model.config, *(m.config for m in modules)]}
        for m in modules:
            impl = m.config._attn_implementation
            cfg = base.plan.for_layer(m.layer_idx)
            m.__dict__[_STATE] = _Layer(ReRoPE(window=1 << 30), cfg, _fallback(m, impl))
            handle._modules.append(m)
        for c in configs.values():
            handle._configs.append((c, c._attn_implementation_internal))
            c._attn_implementation = ATTN_NAME
        got = model_probe(model)
        for name, r, g in (("prefill", ref[0], got[0]), ("cached decode step", ref[1], got[1])):
            ok, diff, tol = outputs_close(r, g)
            if not ok:
                raise PatchVerificationError(f"{where(model)}: ropekit's routed attention ({name}) differs from the "
                                             f"model's own by {diff:.3g} (tolerance {tol:.3g}); not patched.")
        handle._set(method)
    except BaseException:
        handle.undo()
        raise
    model._ropekit_patch = handle
    return handle
