"""``RopePlan``: what every layer of a model rotates with — a ``RopeConfig`` per layer, or ``None`` (NoPE).

Hybrid models are the norm: Gemma-3 rotates its sliding layers with base 10k and its global layers with
base 1M and linear x8; SmolLM3 and Llama-4 leave every 4th layer without RoPE. A single ``RopeConfig``
cannot say that, so the whole-model reading is a plan: layer index -> layer type -> RopeConfig or None.

>>> import ropekit
>>> local = ropekit.RopeConfig(head_dim=64, base=1e4)
>>> plan = RopePlan(layer_types=("sliding_attention",) * 5 + ("full_attention",),
...                 by_type={"sliding_attention": local,
...                          "full_attention": local.replace(base=1e6, scaling=ropekit.Linear(factor=8.0))})
>>> plan.for_layer(5).method, plan.for_layer(0).base
('linear', 10000.0)
>>> plan.with_scaling({"full_attention": ropekit.Linear(factor=16.0)}).for_layer(5).scaling.factor
16.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.scaling import Scaling
from ropekit.core.validation import suggest

__all__ = ["PlanSpec", "RopePlan"]

#: what ``with_scaling`` / ``ropekit.patch`` accept: one config or scaling for every RoPE layer, ``None``
#: (keep), or a dict keyed by layer type (types not named keep their own RoPE).
PlanSpec = RopeConfig | Scaling | None | Mapping[str, RopeConfig | Scaling | None]


@dataclass(frozen=True, kw_only=True)
class RopePlan:
    """Per-layer RoPE of a whole model.

    ``layer_types[i]`` names layer ``i``'s type (HF's ``config.layer_types``; ``"full_attention"`` for every
    layer of a model without types); ``by_type`` gives each type's RopeConfig, or ``None`` when that type
    does not rotate; ``nope_layers`` lists layers that skip RoPE whatever their type (SmolLM3's
    ``no_rope_layers``).
    """

    layer_types: tuple[str, ...]  # one entry per decoder layer, in order
    by_type: Mapping[str, RopeConfig | None]  # layer type -> its RoPE (None: the type is NoPE)
    nope_layers: frozenset[int] = frozenset()  # layer indices that never rotate (NoPE)

    def __post_init__(self) -> None:
        if not isinstance(self.layer_types, tuple) or not all(isinstance(t, str) for t in self.layer_types):
            raise TypeError("layer_types must be a tuple of str (one layer type per layer).")
        if not self.layer_types:
            raise ValueError("layer_types must name at least one layer.")
        if not isinstance(self.by_type, Mapping):
            raise TypeError(f"by_type must map layer type -> RopeConfig or None, got {type(self.by_type).__name__}.")
        missing = sorted(set(self.layer_types) - set(self.by_type))
        if missing:
            raise ValueError(f"by_type has no entry for layer type(s) {missing}; it has {sorted(self.by_type)}.")
        for lt, cfg in self.by_type.items():
            if cfg is not None and not isinstance(cfg, RopeConfig):
                raise TypeError(f"by_type[{lt!r}] must be a RopeConfig or None, got {type(cfg).__name__}.")
        bad = sorted(i for i in self.nope_layers if not 0 <= i < len(self.layer_types))
        if bad:
            raise ValueError(f"nope_layers {bad} are outside [0, {len(self.layer_types)}).")
        object.__setattr__(self, "by_type", dict(self.by_type))  # own copy: the plan is frozen
        object.__setattr__(self, "nope_layers", frozenset(self.nope_layers))

    @classmethod
    def from_hf(cls, config: Any) -> RopePlan:
        """The plan of an HF config (``PretrainedConfig`` or config.json dict), uniform or per layer type.
        See :func:`ropekit.interop.hf_plan.plan_from_hf` (a thin delegate, like RopeConfig's dialect methods)."""
        from ropekit.interop.hf_plan import plan_from_hf

        return plan_from_hf(config)

    # -- reading ------------------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layer_types)

    @property
    def types(self) -> tuple[str, ...]:
        """The distinct layer types, in order of first appearance."""
        return tuple(dict.fromkeys(self.layer_types))

    def for_layer(self, index: int) -> RopeConfig | None:
        """Layer ``index``'s RopeConfig, or ``None`` when it does not rotate."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index must be an int, got {type(index).__name__}.")
        if not 0 <= index < self.num_layers:
            raise ValueError(f"index must be in [0, {self.num_layers}), got {index}.")
        if index in self.nope_layers:
            return None
        return self.by_type[self.layer_types[index]]

    @property
    def layers(self) -> tuple[RopeConfig | None, ...]:
        """Every layer's RopeConfig (``None`` = NoPE), by index."""
        return tuple(self.for_layer(i) for i in range(self.num_layers))

    @property
    def rope_types(self) -> tuple[str, ...]:
        """Layer types that rotate in at least one layer."""
        return tuple(
            t for t in self.types
            if self.by_type[t] is not None
            and any(lt == t and i not in self.nope_layers for i, lt in enumerate(self.layer_types))
        )

    @property
    def is_uniform(self) -> bool:
        """Every rotating layer uses the same RopeConfig."""
        return len({self.by_type[t] for t in self.rope_types}) <= 1

    def single(self) -> RopeConfig:
        """The one RopeConfig every rotating layer uses; raises for hybrid plans (name the types instead)."""
        configs = {self.by_type[t] for t in self.rope_types}
        if len(configs) != 1:
            raise ValueError(
                "this model's layers rotate differently per layer type "
                f"({', '.join(f'{t}: {self.by_type[t]!r}' for t in self.rope_types)}); "
                "use RopePlan.by_type / for_layer, or pass layer_type=."
            )
        return next(iter(configs))  # type: ignore[return-value]

    # -- changing -----------------------------------------------------------------------------------------
    def with_scaling(self, spec: PlanSpec) -> RopePlan:
        """A new plan with ``spec`` applied to the rotating layer types (NoPE layers stay NoPE).

        ``spec``: a Scaling (swapped into every rotating type's config), a RopeConfig (replaces every
        rotating type's config; its head_dim must match), ``None`` (unchanged), or a dict keyed by layer
        type whose values are any of those (types not named keep their own RoPE).
        """
        if isinstance(spec, Mapping):
            unknown = [t for t in spec if t not in self.by_type]
            if unknown:
                raise ValueError(
                    f"spec names layer type(s) {unknown} this model does not have; its layer types are "
                    f"{list(self.types)}." + suggest(str(unknown[0]), self.types)
                )
            nope = [t for t in spec if t not in self.rope_types and spec[t] is not None]
            if nope:
                raise ValueError(f"layer type(s) {nope} do not use RoPE (NoPE) in this model; they cannot be scaled.")
            per_type = dict(spec)
        else:
            per_type = {t: spec for t in self.rope_types}
        new = dict(self.by_type)
        for t, item in per_type.items():
            new[t] = _apply_one(self.by_type[t], item, t)
        return dataclasses.replace(self, by_type=new)

    def describe(self) -> list[dict[str, Any]]:
        """One row per layer type: its layers, and its RoPE (or NoPE), for tables and JSON."""
        rows = []
        for t in self.types:
            idx = [i for i, lt in enumerate(self.layer_types) if lt == t]
            rot = [i for i in idx if i not in self.nope_layers]
            cfg = self.by_type[t]
            rows.append({
                "layer_type": t,
                "layers": idx,
                "nope_layers": [i for i in idx if i not in rot] if cfg is not None else idx,
                "rope": None if cfg is None or not rot else _cfg_dict(cfg),
            })
        return rows


def _apply_one(cfg: RopeConfig | None, item: RopeConfig | Scaling | None, layer_type: str) -> RopeConfig | None:
    if item is None:
        return cfg
    if cfg is None:
        raise ValueError(f"layer type {layer_type!r} does not use RoPE (NoPE); it cannot be scaled.")
    if isinstance(item, Scaling):
        return cfg.replace(scaling=item)
    if isinstance(item, RopeConfig):
        if item.head_dim != cfg.head_dim:
            raise ValueError(
                f"RopeConfig for layer type {layer_type!r} has head_dim={item.head_dim}, but those layers rotate "
                f"head_dim={cfg.head_dim}."
            )
        return item
    raise TypeError(
        f"spec for layer type {layer_type!r} must be a ropekit.RopeConfig, a scaling config (e.g. ropekit.YaRN(...)) "
        f"or None, got {type(item).__name__}."
    )


def _cfg_dict(cfg: RopeConfig) -> dict[str, Any]:
    sc = cfg.scaling
    return {
        "head_dim": cfg.head_dim,
        "rotary_dim": cfg.rotary_dim,
        "base": cfg.base,
        "layout": cfg.layout,
        "method": cfg.method,
        "scaling": None if sc is None else {k: v for k, v in dataclasses.asdict(sc).items()},
        "attention_factor": cfg.attention_factor,
        "max_position_embeddings": cfg.max_position_embeddings,
    }
