"""Patch a loaded Hugging Face model's RoPE with ropekit's: any scaling, any backend, always undoable.

>>> import ropekit
>>> model, tok = ropekit.load_model("smollm2-135m")                      # doctest: +SKIP
>>> with ropekit.patch(model, ropekit.YaRN(factor=2.0, original_max_position_embeddings=8192)):  # doctest: +SKIP
...     out = model(ids)                                                 # 16k tokens, YaRN x2
>>> # back to stock HF here

Families (one module each, imported only when used): llama (also SmolLM/SmolLM2), mistral, qwen2, qwen3.
Nothing is patched at import.
"""

from __future__ import annotations

import importlib
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.scaling import Scaling
from ropekit.core.validation import suggest
from ropekit.patching.base import Family, PatchHandle, resolve_config

__all__ = ["FAMILY_MODULES", "PatchHandle", "family_of", "patch", "supported_model_types"]

#: HF ``model_type`` -> ropekit module holding its :class:`~ropekit.patching.base.Family`.
FAMILY_MODULES: dict[str, str] = {
    "llama": "ropekit.patching.llama",
    "mistral": "ropekit.patching.mistral",
    "qwen2": "ropekit.patching.qwen2",
    "qwen3": "ropekit.patching.qwen3",
}


def supported_model_types() -> list[str]:
    return sorted(FAMILY_MODULES)


def family_of(model: Any) -> Family:
    """The :class:`Family` of a loaded HF model (by ``model.config.model_type``)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in FAMILY_MODULES:
        raise ValueError(
            f"ropekit.patch supports HF model types {supported_model_types()}, got {model_type!r}."
            + (suggest(model_type, FAMILY_MODULES) if isinstance(model_type, str) else "")
        )
    return importlib.import_module(FAMILY_MODULES[model_type]).FAMILY


def patch(model: Any, cfg_or_scaling: RopeConfig | Scaling | None = None, *, backend: str = "auto") -> PatchHandle:
    """Replace ``model``'s RoPE with ropekit's; returns a :class:`PatchHandle` (``.undo()`` / ``with``).

    ``cfg_or_scaling``: a full :class:`~ropekit.RopeConfig`; a scaling config alone (``ropekit.YaRN(...)``),
    meaning the model's own RoPE (``RopeConfig.from_hf(model.config)``) with that scaling; or ``None``
    (the model's own RoPE, computed by ropekit). ``backend``: a :data:`ropekit.functional.BACKENDS` name or
    ``"auto"``; ``"hf"`` keeps HF's ``apply_rotary_pos_emb`` and swaps only the cos/sin.
    """
    from ropekit.functional import BACKENDS

    family = family_of(model)
    if getattr(model, "_ropekit_patch", None) is not None:
        raise ValueError("model is already patched by ropekit; call .undo() on the active handle first.")
    allowed = ["auto", "hf", *BACKENDS]
    if backend not in allowed:
        raise ValueError(f"backend={backend!r} is not one of {sorted(allowed)}." + suggest(str(backend), allowed))
    cfg = resolve_config(model, cfg_or_scaling)
    if backend == "hf" and (cfg.layout != "half" or cfg.rotary_dim != cfg.head_dim):
        raise ValueError(
            "backend='hf' uses HF's apply_rotary_pos_emb, which needs layout='half' and rotary_dim == head_dim; "
            f"got layout={cfg.layout!r}, rotary_dim={cfg.rotary_dim}. Use backend='auto'."
        )
    handle = PatchHandle(model, cfg, family, backend)
    handle._apply()
    return handle
