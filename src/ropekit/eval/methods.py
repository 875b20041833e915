"""Eval method specs: which RoPE scaling to apply, at which factor, to which layer types.

Grammar of one ``--methods`` entry (``[...]`` optional)::

    METHOD[@FACTOR][:LAYER_TYPE[+LAYER_TYPE...]]

``METHOD`` is ``none`` (the model's own RoPE), ``longrope`` (the model's own LongRoPE factors), a
scaling method (``linear``, ``ntk``, ``dynamic``, ``yarn``, ``llama3``, ...) or an extension method
(:data:`EXTENSION_METHODS`: ``self-extend@F``, and ``dca``, ``rerope``, ``leaky-rerope``, ``dynamic-yarn``,
which take no factor; parameters from the trained context L, see :func:`extension_for`). Without ``@FACTOR`` the
method runs once per factor of the plan's factor grid. Without ``:LAYER_TYPE`` every RoPE layer is
scaled; with it only layers of those HF ``layer_types`` are (the others keep their own RoPE), e.g. on
Gemma 3 ``linear@8:full_attention`` scales the global layers only, ``linear@8`` every layer, which is
the question users of hybrid sliding/global models ask. Labels in results are the canonical spelling:
``linear@8:full_attention``.

>>> parse_method("linear@8:full_attention")
MethodSpec(method='linear', factor=8.0, layer_types=('full_attention',))
>>> parse_method("yarn").label(2.0)
'yarn@2'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ropekit.core.scaling import FACTOR_METHODS, Scaling, scaling_from_factor
from ropekit.core.validation import check_choice, suggest

__all__ = [
    "DEFAULT_METHODS",
    "EXTENSION_METHODS",
    "LAYERED_DEFAULT_METHODS",
    "METHODS",
    "MethodSpec",
    "ModelRope",
    "cell_scalings",
    "extension_for",
    "model_rope",
    "parse_method",
]

#: training-free extension methods (ropekit.extension); only self-extend takes a factor (its group size)
EXTENSION_METHODS = ("self-extend", "dca", "rerope", "leaky-rerope", "dynamic-yarn")
_FACTOR_FREE = ("none", "longrope", *EXTENSION_METHODS[1:])

#: method names ``ropekit eval`` accepts; "none" is the model's own RoPE, "longrope" the model's own factors.
METHODS = (*FACTOR_METHODS, "longrope", *EXTENSION_METHODS)

#: default grid for models with one RoPE (SmolLM2, Llama, Qwen, ...).
DEFAULT_METHODS = ("none", "linear", "ntk", "dynamic", "yarn")

#: default grid for hybrid models with per-layer-type RoPE (Gemma 3: 5 sliding layers per global one).
#: No scaling vs linear on the global layers only (Gemma 3's own long-context recipe) vs linear on
#: every layer, then YaRN on the global layers. Sliding layers never see a distance beyond their window,
#: so ``:full_attention`` is the natural target; ``yarn`` / ``ntk`` on every layer are opt-in.
LAYERED_DEFAULT_METHODS = ("none", "linear:full_attention", "linear", "yarn:full_attention")

#: What a cell hands to ``ropekit.patch``: a Scaling (every RoPE layer), None (the model's own RoPE) or
#: ``{layer_type: Scaling}`` (only those layer types scaled).
PatchSpec = Scaling | None | dict[str, Scaling] | Any  # Any: a ropekit.extension config


@dataclass(frozen=True, kw_only=True)
class MethodSpec:
    """One parsed ``--methods`` entry."""

    method: str  # "none", "longrope" or a FACTOR_METHODS name
    factor: float | None = None  # fixed factor from "@F"; None: each factor of the plan's grid
    layer_types: tuple[str, ...] | None = None  # only these layer types scaled; None: every RoPE layer

    def label(self, factor: float | None = None) -> str:
        """Canonical cell label: ``none``, ``yarn@2``, ``linear@8:full_attention``."""
        if self.method in _FACTOR_FREE:
            return self.method
        f = self.factor if self.factor is not None else factor
        if f is None:
            raise ValueError(f"method {self.method!r} needs a factor: write {self.method}@F or pass factors.")
        text = f"{self.method}@{f:g}"
        return text + (":" + "+".join(self.layer_types) if self.layer_types else "")


def parse_method(text: str) -> MethodSpec:
    """Parse ``METHOD[@FACTOR][:LAYER_TYPE[+...]]`` (see the module doc); ``ValueError`` naming the part."""
    if not isinstance(text, str):
        raise TypeError(f"method must be a string like 'yarn' or 'linear@8:full_attention', got {text!r}.")
    head, sep, types_text = text.partition(":")
    name, at, factor_text = head.partition("@")
    check_choice("method", name, METHODS)
    factor = None
    if at:
        try:
            factor = float(factor_text)
        except ValueError:
            raise ValueError(f"method {text!r}: the factor after '@' must be a number, got {factor_text!r}.") from None
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"method {text!r}: factor must be a finite number > 0, got {factor_text!r}.")
    layer_types = None
    if sep:
        layer_types = tuple(t.strip() for t in types_text.split("+"))
        if not all(layer_types):
            raise ValueError(f"method {text!r}: name the layer types after ':', e.g. 'linear:full_attention'.")
    if name in ("none", "longrope") and (at or sep):
        raise ValueError(f"method {text!r}: {name!r} is the model's own RoPE and takes no '@factor' or ':layer_type'.")
    if name in EXTENSION_METHODS and (sep or (at and name in _FACTOR_FREE)):
        what = "':layer_type'" if sep else "'@factor' (its parameters follow the trained context)"
        raise ValueError(f"method {text!r}: {name!r} takes no {what}.")
    return MethodSpec(method=name, factor=factor, layer_types=layer_types)


@dataclass(frozen=True, kw_only=True)
class ModelRope:
    """A model's own RoPE as the eval needs it (read from its config only)."""

    own: Any  # RopeConfig of a single-RoPE model; None for a per-layer-type model
    per_type: dict[str, Any]  # layer type -> RopeConfig (empty for a single-RoPE model)
    context: int  # trained context L (original_max_position_embeddings, else max_position_embeddings)

    @property
    def layered(self) -> bool:
        return bool(self.per_type)


def model_rope(hf_config: Any) -> ModelRope:
    """The own RoPE of a HF config: one RopeConfig, or one per layer type when ``rope_parameters`` is nested."""
    from ropekit.core.config import RopeConfig

    d = hf_config.to_dict() if hasattr(hf_config, "to_dict") else dict(hf_config)
    params = d.get("rope_parameters")
    nested = isinstance(params, dict) and params and all(isinstance(v, dict) for v in params.values())
    if nested:
        per_type = {t: RopeConfig.from_hf(hf_config, layer_type=t) for t in params}
        first = next(iter(per_type.values()))
        own = None
    else:
        own = first = RopeConfig.from_hf(hf_config)
        per_type = {}
    context = first.original_max_position_embeddings or first.max_position_embeddings
    if context is None:
        raise ValueError("the model has no max_position_embeddings: cannot place the position buckets.")
    return ModelRope(own=own, per_type=per_type, context=int(context))


def _own_longrope(rope: ModelRope) -> PatchSpec:
    configs = list(rope.per_type.values()) if rope.layered else [rope.own]
    if any(c.method != "longrope" for c in configs):
        got = sorted({c.method for c in configs})
        raise ValueError(
            "method 'longrope' needs the model's own LongRoPE short/long factors, but this model's RoPE is "
            f"{got[0]!r}; pick one of {list(FACTOR_METHODS)}." if len(got) == 1 else
            f"method 'longrope' needs LongRoPE on every layer type, got {got}; pick one of {list(FACTOR_METHODS)}."
        )
    return None if rope.layered else rope.own.scaling


def cell_scalings(methods: tuple[str, ...], factors: tuple[float, ...], rope: ModelRope) -> dict[str, PatchSpec]:
    """Cell label -> what to hand to ``ropekit.patch`` for every (method, factor) of the grid.

    Raises ``ValueError`` for a ``:layer_type`` the model does not have (or any on a single-RoPE model).
    """
    out: dict[str, PatchSpec] = {}
    for text in methods:
        spec = parse_method(text)
        if spec.method == "none":
            out["none"] = None if rope.layered else rope.own.scaling
            continue
        if spec.method == "longrope":
            out["longrope"] = _own_longrope(rope)
            continue
        if spec.method in EXTENSION_METHODS:
            for f in (spec.factor,) if spec.factor is not None or spec.method in _FACTOR_FREE else factors:
                out[spec.label(f)] = extension_for(spec.method, 1.0 if f is None else float(f), rope.context)
            continue
        if spec.layer_types is not None:
            if not rope.layered:
                raise ValueError(
                    f"method {text!r} scales only some layer types, but this model has one RoPE for every layer; "
                    f"use {spec.method!r} without ':{'+'.join(spec.layer_types)}'."
                )
            for t in spec.layer_types:
                if t not in rope.per_type:
                    raise ValueError(
                        f"method {text!r}: layer type {t!r} is not one of this model's {sorted(rope.per_type)}."
                        + suggest(t, list(rope.per_type))
                    )
        for f in (spec.factor,) if spec.factor is not None else factors:
            s = scaling_from_factor(spec.method, float(f), original_max_position_embeddings=rope.context)
            out[spec.label(f)] = s if spec.layer_types is None else dict.fromkeys(spec.layer_types, s)
    return out


def extension_for(method: str, factor: float, context: int) -> Any:
    """The extension config ``ropekit eval`` runs for ``method`` on a model trained on ``context`` tokens.

    Defaults (from the papers, scaled to L = ``context``): Self-Extend W = L/8 and G = ceil(2 * factor), so
    the largest grouped distance at factor x L stays near L/2 (G=4 W=1024 at 2x on an 8k model; Jin et al.
    found G insensitive between 4 and 16 and used W of 1-2k); DCA chunk = 3L/4, local = L/16 (ChunkLlama's
    3/4-of-training chunk); ReRoPE w = L/2; Leaky ReRoPE w = L/4, slope 16 (Su's k=16: distances up to
    ~(12 L) stay below L); dynamic YaRN with L0 = L.

    >>> extension_for("self-extend", 2.0, 8192)
    SelfExtend(group_size=4, window=1024, compat='paper')
    >>> extension_for("dca", 1.0, 8192)
    DualChunk(chunk_size=6144, local_size=512)
    """
    from ropekit.extension import DualChunk, DynamicYaRN, LeakyReRoPE, ReRoPE, SelfExtend

    check_choice("method", method, EXTENSION_METHODS)
    if context < 16:
        raise ValueError(f"context must be >= 16 tokens to place extension windows, got {context}.")
    if method == "self-extend":
        return SelfExtend(group_size=max(1, math.ceil(2 * factor)), window=context // 8)
    if method == "dca":
        return DualChunk(chunk_size=3 * context // 4, local_size=context // 16)
    if method == "rerope":
        return ReRoPE(window=context // 2)
    if method == "leaky-rerope":
        return LeakyReRoPE(window=context // 4, slope=16.0)
    return DynamicYaRN(original_max_position_embeddings=context)
