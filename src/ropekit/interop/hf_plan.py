"""Read a whole HF model's RoPE as a :class:`~ropekit.core.plan.RopePlan`: per layer type, NoPE layers.

Sources of per-layer structure in transformers configs:

- ``layer_types`` (one name per layer; Gemma-2/3, Qwen2/3, gpt-oss, Cohere2, OLMo-3, ...);
- ``rope_parameters`` nested per layer type (Gemma-3: sliding base 10k, global base 1M + linear x8);
  a type whose entry is ``None`` does not rotate;
- ``no_rope_layers`` (SmolLM3, Llama-4: 1 = the layer rotates, 0 = NoPE).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.plan import RopePlan
from ropekit.interop.hf import config_dict, from_hf

__all__ = ["DEFAULT_LAYER_TYPE", "plan_from_hf", "text_config"]

#: the layer type of every layer of a model whose config has no ``layer_types`` (HF's own default name).
DEFAULT_LAYER_TYPE = "full_attention"
#: layer types that are not attention (hybrid recurrent / convolutional models): they never rotate
NON_ATTENTION_TYPES = frozenset({"linear_attention", "mamba", "conv", "mlp", "recurrent", "ssm", "rwkv"})
# names a PretrainedConfig may keep under other keys (attribute_map: GPT-J's n_embd, DBRX's n_layers, ...)
_STANDARD_KEYS = ("hidden_size", "num_attention_heads", "num_hidden_layers", "max_position_embeddings")


def text_config(config: Any) -> Any:
    """The decoder's config: ``config.get_text_config()`` for composite (multimodal) configs, else ``config``."""
    if isinstance(config, Mapping):
        inner = config.get("text_config")
        return inner if isinstance(inner, Mapping) else config
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def _num_layers(d: Mapping[str, Any], layer_types: list[Any] | None) -> int:
    n = d.get("num_hidden_layers", d.get("n_layer", d.get("num_layers")))
    if n is None:
        if layer_types:
            return len(layer_types)
        raise ValueError("HF config has no num_hidden_layers (nor n_layer / num_layers / layer_types).")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_hidden_layers must be an int >= 1, got {n!r}.")
    return n


def _nested(d: Mapping[str, Any], types: set[str]) -> dict[str, Any] | None:
    """The per-layer-type rope dict, or None when the RoPE parameters are flat."""
    params = d.get("rope_parameters") or d.get("rope_scaling")
    if not isinstance(params, Mapping) or not params:
        return None
    keyed = {k: v for k, v in params.items() if k in types or isinstance(v, Mapping)}
    if keyed and all(v is None or isinstance(v, Mapping) for v in keyed.values()) and set(keyed) == set(params):
        return dict(params)
    return None


def _gemma3_legacy(d: Mapping[str, Any], layer_types: tuple[str, ...]) -> dict[str, Any]:
    """Gemma-3's pre-v5 keys, as transformers standardises them: the sliding layers rotate unscaled with
    ``rope_local_base_freq``; every other type takes the flat ``rope_scaling`` / ``rope_theta``."""
    flat = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})
    flat.setdefault("rope_type", flat.get("type", "default"))
    if "rope_theta" not in flat and d.get("rope_theta") is not None:
        flat["rope_theta"] = d["rope_theta"]
    local = {"rope_type": "default", "rope_theta": d["rope_local_base_freq"]}
    return {t: (local if t == "sliding_attention" else flat) for t in dict.fromkeys(layer_types)}


def _per_type_head_dim(d: Mapping[str, Any], layer_types: tuple[str, ...]) -> dict[str, int]:
    """head_dim overrides from ``per_layer_config`` (Gemma-4's global layers: 512), which must agree per type."""
    per_layer = d.get("per_layer_config")
    if not isinstance(per_layer, Mapping):
        return {}
    out: dict[str, set[int]] = {}
    for key, over in per_layer.items():
        if isinstance(over, Mapping) and over.get("head_dim") is not None:
            try:
                idx = int(key)
                lt = layer_types[idx]
            except (ValueError, TypeError, IndexError):
                raise ValueError(f"per_layer_config key {key!r} is not a layer index below {len(layer_types)}.") \
                    from None
            out.setdefault(lt, set()).add(int(over["head_dim"]))
    for lt, dims in out.items():
        n_over = sum(1 for k in per_layer if _as_index(k) is not None and layer_types[_as_index(k)] == lt)
        if len(dims) > 1 or n_over != layer_types.count(lt):
            raise ValueError(f"per_layer_config gives layers of type {lt!r} different head_dims; a RoPE plan needs "
                             "one per layer type.")
    return {lt: next(iter(dims)) for lt, dims in out.items()}


def _as_index(key: Any) -> int | None:
    try:
        return int(key)
    except (TypeError, ValueError):
        return None


def plan_from_hf(config: Any) -> RopePlan:
    """A :class:`RopePlan` from an HF ``PretrainedConfig`` or config.json dict (uniform or hybrid).

    >>> plan = plan_from_hf({"hidden_size": 256, "num_attention_heads": 4, "num_hidden_layers": 3,
    ...     "max_position_embeddings": 32768, "layer_types": ["sliding_attention", "sliding_attention",
    ...     "full_attention"], "rope_parameters": {
    ...         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    ...         "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}}})
    >>> [(r["layer_type"], r["rope"]["base"], r["rope"]["method"]) for r in plan.describe()]
    [('sliding_attention', 10000.0, 'default'), ('full_attention', 1000000.0, 'linear')]
    """
    inner = text_config(config)
    d = config_dict(inner)
    if not isinstance(inner, Mapping):
        for key in _STANDARD_KEYS:
            if d.get(key) is None:
                try:
                    value = getattr(inner, key, None)
                except Exception:  # some configs raise on ambiguous per-layer attributes
                    value = None
                if value is not None:
                    d[key] = value
    raw_types = d.get("layer_types")
    if raw_types is not None and (
        not isinstance(raw_types, (list, tuple)) or not all(isinstance(t, str) for t in raw_types)
    ):
        raise TypeError(f"layer_types must be a list of str, got {raw_types!r:.80}.")
    n = _num_layers(d, list(raw_types) if raw_types else None)
    layer_types = tuple(raw_types) if raw_types else (DEFAULT_LAYER_TYPE,) * n
    if len(layer_types) != n:
        raise ValueError(f"layer_types has {len(layer_types)} entries but num_hidden_layers={n}.")
    nested = _nested(d, set(layer_types))
    if nested is None and d.get("rope_local_base_freq") is not None and "sliding_attention" in layer_types:
        nested = _gemma3_legacy(d, layer_types)
        d = {**d, "rope_parameters": nested, "rope_scaling": None}
    head_dims = _per_type_head_dim(d, layer_types)
    by_type: dict[str, RopeConfig | None] = {}
    for lt in dict.fromkeys(layer_types):
        dt = {**d, "head_dim": head_dims[lt]} if lt in head_dims else d
        if lt in NON_ATTENTION_TYPES:
            by_type[lt] = None
        elif nested is None:
            by_type[lt] = from_hf(dt)
        elif lt not in nested:
            raise ValueError(
                f"rope_parameters is nested per layer type {sorted(nested)} but has no entry for layer type {lt!r}."
            )
        elif nested[lt] is None:
            by_type[lt] = None
        else:
            by_type[lt] = from_hf(dt, layer_type=lt)
    nope: set[int] = set()
    flags = d.get("no_rope_layers")
    if flags is not None:
        if not isinstance(flags, (list, tuple)) or len(flags) != n:
            raise ValueError(f"no_rope_layers must list one 0/1 flag per layer ({n}), got {flags!r:.80}.")
        nope = {i for i, use in enumerate(flags) if not use}  # HF: 1 = this layer uses RoPE
    return RopePlan(layer_types=layer_types, by_type=by_type, nope_layers=frozenset(nope))
