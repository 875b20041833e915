"""Hugging Face config dialect: ``rope_parameters`` (transformers v5, possibly nested per layer type) and
the legacy ``rope_scaling`` / ``rope_theta`` / ``partial_rotary_factor`` / ``type`` keys.

Resolution follows transformers' ``standardize_rope_params``: keys inside the RoPE dict win over
top-level ones, except Phi-3's top-level ``original_max_position_embeddings``, which HF gives priority.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.scaling import DynamicNTK, Linear, Llama3, LongRoPE, Proportional, Scaling, YaRN
from ropekit.core.validation import suggest

__all__ = ["HF_ROPE_TYPES", "INTERLEAVED_MODEL_TYPES", "config_dict", "from_hf", "rope_dict"]

#: HF rope_type names ropekit reads ("su" and "mrope" are legacy aliases HF also accepts).
HF_ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "llama3", "proportional")
_ALIASES = {"su": "longrope", "mrope": "default"}
#: model types whose checkpoints pair channels GPT-J style (2i, 2i+1).
INTERLEAVED_MODEL_TYPES = frozenset({"gptj", "codegen", "cohere"})


def config_dict(config: Any) -> dict[str, Any]:
    """A plain dict from a ``PretrainedConfig`` or a config.json mapping (not mutated)."""
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        d = dict(config.to_dict())
        # attributes computed in __init__ (e.g. head_dim) may be absent from to_dict
        for key in ("head_dim", "rope_parameters", "partial_rotary_factor", "rotary_dim"):
            if d.get(key) is None and getattr(config, key, None) is not None:
                d[key] = getattr(config, key)
        return d
    raise TypeError(f"config must be a transformers PretrainedConfig or a dict, got {type(config).__name__}.")


def rope_dict(d: Mapping[str, Any], layer_type: str | None = None) -> dict[str, Any]:
    """The RoPE parameter dict of a config (per-layer-type entry when nested)."""
    params = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if not isinstance(params, Mapping):
        raise TypeError(f"rope_parameters/rope_scaling must be a dict, got {type(params).__name__}.")
    nested = [k for k, v in params.items() if isinstance(v, Mapping)]
    if nested:
        if layer_type is None:
            raise ValueError(f"this config has per-layer-type RoPE parameters; pass layer_type= one of {nested}.")
        if layer_type not in nested:
            raise ValueError(f"layer_type={layer_type!r} is not one of {nested}." + suggest(layer_type, nested))
        return dict(params[layer_type])
    if layer_type is not None:
        raise ValueError(f"layer_type={layer_type!r} given, but this config's RoPE parameters are not nested.")
    return dict(params)


def _head_dim(d: Mapping[str, Any]) -> int:
    hd = d.get("head_dim")
    if hd:
        return int(hd)
    try:
        return int(d["hidden_size"]) // int(d["num_attention_heads"])
    except KeyError:
        raise ValueError("HF config has neither head_dim nor hidden_size/num_attention_heads.") from None


def _rope_type(p: Mapping[str, Any]) -> str:
    rt = p.get("rope_type", p.get("type", "default")) or "default"
    rt = _ALIASES.get(rt, rt)
    if rt not in HF_ROPE_TYPES:
        raise ValueError(f"unknown HF rope_type {rt!r}; ropekit reads {list(HF_ROPE_TYPES)}." + suggest(rt, HF_ROPE_TYPES))
    return rt


def _require(p: Mapping[str, Any], key: str, rope_type: str) -> Any:
    if p.get(key) is None:
        raise ValueError(f"HF rope_type {rope_type!r} needs the key {key!r} in rope_parameters/rope_scaling.")
    return p[key]


def _scaling(rt: str, p: Mapping[str, Any], d: Mapping[str, Any]) -> Scaling | None:
    max_pos = d.get("max_position_embeddings")
    # HF: Phi-3's top-level original_max_position_embeddings wins; else the dict's; else max_position_embeddings
    L0 = d.get("original_max_position_embeddings") or p.get("original_max_position_embeddings") or max_pos
    if rt == "default":
        return None
    if rt == "linear":
        return Linear(factor=_require(p, "factor", rt))
    if rt == "dynamic":
        if max_pos is None:
            raise ValueError("HF rope_type 'dynamic' needs max_position_embeddings in the config.")
        return DynamicNTK(factor=_require(p, "factor", rt), original_max_position_embeddings=int(max_pos))
    if rt == "proportional":
        return Proportional(partial_rotary_factor=p.get("partial_rotary_factor", 1.0), factor=p.get("factor", 1.0))
    if L0 is None:
        raise ValueError(f"HF rope_type {rt!r} needs original_max_position_embeddings or max_position_embeddings.")
    L0 = int(L0)
    if rt == "llama3":
        return Llama3(
            factor=_require(p, "factor", rt),
            original_max_position_embeddings=L0,
            low_freq_factor=_require(p, "low_freq_factor", rt),
            high_freq_factor=_require(p, "high_freq_factor", rt),
        )
    factor = p.get("factor")
    if factor is None and max_pos is not None:
        factor = max_pos / L0  # HF's fallback (DeepSeek-V3, Phi-3)
    if rt == "yarn":
        if factor is None:
            raise ValueError("HF rope_type 'yarn' needs factor (or max_position_embeddings to derive it).")
        return YaRN(
            factor=factor,
            original_max_position_embeddings=L0,
            beta_fast=p.get("beta_fast") or 32.0,  # HF treats 0/None as the default
            beta_slow=p.get("beta_slow") or 1.0,
            mscale=p.get("mscale"),
            mscale_all_dim=p.get("mscale_all_dim"),
            attention_factor=p.get("attention_factor"),
            truncate=bool(p.get("truncate", True)),
        )
    return LongRoPE(
        short_factor=_require(p, "short_factor", rt),
        long_factor=_require(p, "long_factor", rt),
        original_max_position_embeddings=L0,
        factor=factor,
        attention_factor=p.get("attention_factor"),
    )


def from_hf(config: Any, *, layer_type: str | None = None) -> RopeConfig:
    """``RopeConfig`` from an HF ``PretrainedConfig`` or config.json dict.

    >>> cfg = from_hf({"hidden_size": 576, "num_attention_heads": 9, "rope_theta": 100000.0,
    ...                "max_position_embeddings": 8192})
    >>> cfg.head_dim, cfg.base, cfg.method
    (64, 100000.0, 'default')
    """
    d = config_dict(config)
    p = rope_dict(d, layer_type)
    rt = _rope_type(p)
    base = p.get("rope_theta", d.get("rope_theta", d.get("rotary_emb_base", 10000.0)))
    head_dim = _head_dim(d)
    scaling = _scaling(rt, p, d)
    rotary_dim = None
    prf = None
    if rt != "proportional":
        prf = p.get("partial_rotary_factor", d.get("partial_rotary_factor", d.get("rotary_pct")))
        if d.get("rotary_dim") and prf is None:  # GPT-J / CodeGen give the rotated width directly
            rotary_dim = int(d["rotary_dim"])
    layout = "interleaved" if d.get("model_type") in INTERLEAVED_MODEL_TYPES else "half"
    max_pos = d.get("max_position_embeddings")
    return RopeConfig(
        head_dim=head_dim,
        base=float(base),
        layout=layout,
        rotary_dim=rotary_dim,
        partial_rotary_factor=None if prf is None else float(prf),
        max_position_embeddings=None if max_pos is None else int(max_pos),
        scaling=scaling,
    )
