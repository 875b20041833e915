"""Patch a loaded Hugging Face model's RoPE with ropekit's: any architecture, any scaling, verified, undoable.

>>> import ropekit
>>> model, tok = ropekit.load_model("smollm2-135m")                      # doctest: +SKIP
>>> with ropekit.patch(model, ropekit.YaRN(factor=2.0, original_max_position_embeddings=8192)):  # doctest: +SKIP
...     out = model(ids)                                                 # 16k tokens, YaRN x2
>>> # back to stock HF here

Nothing is patched at import. Every patch is verified on the model it patches (see
:mod:`ropekit.patching.verify`) and raises rather than run a rotation that differs from the model's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.plan import PlanSpec, RopePlan
from ropekit.core.scaling import Scaling
from ropekit.core.validation import suggest
from ropekit.patching.adapter import RopeAdapter, find_rotary_sites
from ropekit.patching.fused import FUSED_FAMILIES
from ropekit.patching.handle import PatchHandle
from ropekit.patching.verify import PatchVerificationError, where

__all__ = ["FUSED_FAMILIES", "PATCH_BACKENDS", "PatchHandle", "PatchVerificationError", "own_plan", "patch"]

#: "auto": fused kernels where verified for the model type, else tables; "tables": ropekit's tables feed
#: the model's own rotation; the rest name a fused-kernel backend (ropekit.functional.BACKENDS).
PATCH_BACKENDS = ("auto", "tables", "cpu", "triton", "reference")

#: model types whose RoPE is not a per-token 1-D rotation ropekit can feed (refused by name, with the reason)
REFUSED_ROPE_TYPES = {
    "mrope": "multi-axis M-RoPE (3-D position ids) is not a 1-D rotary table; see ropekit.multiaxis",
}


def own_plan(model: Any) -> RopePlan:
    """The model's own RoPE as ropekit reads its config (raises naming the model type when unreadable)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise TypeError(f"model must be a loaded Hugging Face model (with .config), got {type(model).__name__}.")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    params = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None) or {}
    flat = [params, *(v for v in params.values() if isinstance(v, Mapping))] if isinstance(params, Mapping) else []
    for p in flat:
        rt = p.get("rope_type", p.get("type"))
        if rt in REFUSED_ROPE_TYPES or "mrope_section" in p:
            raise ValueError(f"ropekit.patch refuses {where(model)}: {REFUSED_ROPE_TYPES['mrope']}.")
    try:
        return RopePlan.from_hf(config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"ropekit cannot read the RoPE config of {where(model)}: {e}") from e


def patch(model: Any, spec: PlanSpec | RopePlan = None, *, backend: str = "auto") -> PatchHandle:
    """Replace ``model``'s RoPE with ropekit's; returns a :class:`PatchHandle` (``.undo()`` / ``with``).

    ``spec``: ``None`` (the model's own RoPE through ropekit's float64-precise tables); a scaling
    (``ropekit.YaRN(...)``: applied to every RoPE layer); a :class:`~ropekit.RopeConfig` (every RoPE layer);
    a dict keyed by layer type (``{"full_attention": ropekit.Linear(factor=8.0)}``; types not named keep
    their own RoPE); or a whole :class:`~ropekit.RopePlan`. NoPE layers stay NoPE.
    ``backend``: one of :data:`PATCH_BACKENDS`. ``spec`` may also be an extension method
    (``ropekit.SelfExtend(...)``, ``DualChunk``, ``ReRoPE``, ``LeakyReRoPE``, ``DynamicYaRN``): the model's
    own RoPE is patched and its attention routed through the method (:mod:`ropekit.extension.hf`).

    Before returning, the replacement is run with the model's own RoPE on a probe (prefill and one cached
    decode step) and compared with the stock model: :class:`PatchVerificationError` (a ``ValueError``) if
    they differ. Bad input raises ``ValueError``/``TypeError``; nothing is left half-patched.
    """
    if getattr(model, "_ropekit_patch", None) is not None:
        raise ValueError("model is already patched by ropekit; call .undo() on the active handle first.")
    if backend not in PATCH_BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {list(PATCH_BACKENDS)}." + suggest(str(backend),
                                                                                           PATCH_BACKENDS))
    # ropekit.extension hook (issue 12): Self-Extend / DCA / ReRoPE / dynamic YaRN run on the model's own
    # RoPE patched as below, with the attention routed through ropekit (verified, undone with the handle)
    from ropekit.extension.methods import Extension

    if isinstance(spec, Extension):
        from ropekit.extension.hf import install

        return install(model, patch(model, None, backend=backend), spec)  # type: ignore[return-value]
    if not (spec is None or isinstance(spec, (RopeConfig, Scaling, RopePlan, Mapping))):
        raise TypeError(
            "spec must be a ropekit.RopeConfig, a scaling config (e.g. ropekit.YaRN(...)), a dict "
            f"{{layer_type: scaling}}, a ropekit.RopePlan or None, got {type(spec).__name__}."
        )
    if isinstance(spec, Mapping) and not all(isinstance(k, str) for k in spec):
        raise TypeError("a dict spec must be keyed by layer type names (str), e.g. {'full_attention': ...}.")
    own = own_plan(model)
    if isinstance(spec, RopePlan):
        if spec.layer_types != own.layer_types:
            raise ValueError(f"spec plan has layer types {spec.layer_types}, the model {own.layer_types}.")
        plan = spec
    else:
        plan = own.with_scaling(spec)
    sites = find_rotary_sites(model)
    if any(isinstance(m, RopeAdapter) for m in model.modules()):
        raise ValueError("model already holds ropekit rotary adapters (a patch not undone?); reload the model.")
    if not sites:
        raise ValueError(f"ropekit.patch found no rotary embedding module (*RotaryEmbedding) in {where(model)}: "
                         "a NoPE model, or one that computes RoPE inline; nothing to patch.")
    handle = PatchHandle(model, own, plan, backend)
    handle._apply(sites)
    return handle
