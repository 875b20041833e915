"""Hugging Face config dialect: ``rope_parameters`` (transformers v5, possibly nested per layer type) and
the legacy ``rope_scaling`` / ``rope_theta`` / ``partial_rotary_factor`` / ``type`` keys.

Resolution follows transformers' ``standardize_rope_params``: keys inside the RoPE dict win over
top-level ones, except Phi-3's top-level ``original_max_position_embeddings``, which HF gives priority.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.scaling import NTK, DynamicNTK, Linear, Llama3, LongRoPE, Proportional, Scaling, YaRN
from ropekit.core.validation import suggest

__all__ = [
    "HF_ROPE_TYPES",
    "INTERLEAVED_MODEL_TYPES",
    "config_dict",
    "from_hf",
    "rope_dict",
    "to_hf",
    "to_hf_per_layer_type",
]

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
        known = list(HF_ROPE_TYPES)
        raise ValueError(f"unknown HF rope_type {rt!r}; ropekit reads {known}." + suggest(rt, known))
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
    if rt == "dynamic" and p.get("alpha") is not None and p.get("factor") is None:
        return NTK(alpha=p["alpha"])  # HunYuan's "dynamic" + alpha is a static NTK base change
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


# -- writing ---------------------------------------------------------------------------------------------
def _scaling_keys(cfg: RopeConfig) -> dict[str, Any]:
    """rope_type and the scaling keys HF reads for ``cfg.scaling`` (no rope_theta / partial factor)."""
    sc = cfg.scaling
    if sc is None:
        return {"rope_type": "default"}
    if isinstance(sc, Linear):
        return {"rope_type": "linear", "factor": sc.factor}
    if isinstance(sc, DynamicNTK):
        if cfg.max_position_embeddings not in (None, sc.original_max_position_embeddings):
            raise ValueError(
                f"HF 'dynamic' grows the base past config.max_position_embeddings, so it must equal "
                f"DynamicNTK.original_max_position_embeddings={sc.original_max_position_embeddings}; got "
                f"max_position_embeddings={cfg.max_position_embeddings}. Use cfg.replace(max_position_embeddings=...)."
            )
        return {"rope_type": "dynamic", "factor": sc.factor}
    if isinstance(sc, NTK):
        raise ValueError(
            "HF has no generic static-NTK rope_type (HunYuan's 'dynamic'+'alpha' is model code); fold it into the "
            "base with cfg.replace(base=cfg.base * alpha ** (d / (d - 2)), scaling=None), or use to_vllm()."
        )
    if isinstance(sc, Proportional):
        return {"rope_type": "proportional", "partial_rotary_factor": sc.partial_rotary_factor, "factor": sc.factor}
    if isinstance(sc, Llama3):
        return {
            "rope_type": "llama3",
            "factor": sc.factor,
            "original_max_position_embeddings": sc.original_max_position_embeddings,
            "low_freq_factor": sc.low_freq_factor,
            "high_freq_factor": sc.high_freq_factor,
        }
    if isinstance(sc, YaRN):
        out: dict[str, Any] = {
            "rope_type": "yarn",
            "factor": sc.factor,
            "original_max_position_embeddings": sc.original_max_position_embeddings,
            "beta_fast": sc.beta_fast,
            "beta_slow": sc.beta_slow,
        }
        for key in ("mscale", "mscale_all_dim", "attention_factor"):
            if getattr(sc, key) is not None:
                out[key] = getattr(sc, key)
        if not sc.truncate:
            out["truncate"] = False
        return out
    assert isinstance(sc, LongRoPE)
    out = {
        "rope_type": "longrope",
        "short_factor": list(sc.short_factor),
        "long_factor": list(sc.long_factor),
        "original_max_position_embeddings": sc.original_max_position_embeddings,
    }
    if sc.factor is not None:
        out["factor"] = sc.factor
    if sc.attention_factor is not None or sc.factor is None:
        # HF derives a missing factor from max_position_embeddings / L0; pin the attention factor ropekit uses
        out["attention_factor"] = cfg.attention_factor
    return out


def _check_layout(cfg: RopeConfig, model_type: str | None) -> None:
    interleaved_model = model_type in INTERLEAVED_MODEL_TYPES
    if cfg.layout == "interleaved" and not interleaved_model:
        raise ValueError(
            "HF expresses the pair layout only through model_type: layout='interleaved' needs model_type= one of "
            f"{sorted(INTERLEAVED_MODEL_TYPES)}. For Llama-style HF checkpoints convert the q/k weights with "
            "ropekit.interop.permute_qk(w, n_heads, head_dim, src='interleaved', dst='half') and use "
            "cfg.replace(layout='half')."
        )
    if cfg.layout == "half" and interleaved_model:
        raise ValueError(f"model_type={model_type!r} pairs channels GPT-J style; cfg.layout must be 'interleaved'.")


def _partial(cfg: RopeConfig) -> float | None:
    if isinstance(cfg.scaling, Proportional) or cfg.rotary_dim == cfg.head_dim:
        return None
    prf = cfg.partial_rotary_factor
    assert prf is not None
    if int(cfg.head_dim * prf) != cfg.rotary_dim:  # HF truncates head_dim * factor
        raise ValueError(
            f"rotary_dim={cfg.rotary_dim} is not int(head_dim * partial_rotary_factor) = {int(cfg.head_dim * prf)} "
            "in floating point, so HF would rotate a different width; pick a rotary_dim HF can express."
        )
    return prf


def to_hf(cfg: RopeConfig, *, legacy: bool = False, model_type: str | None = None) -> dict[str, Any]:
    """The config.json keys that describe ``cfg`` to transformers (merge them into a model's config).

    ``legacy=False`` writes transformers v5 ``rope_parameters`` (rope_theta and partial_rotary_factor inside);
    ``legacy=True`` writes the v4 form: top-level ``rope_theta`` / ``partial_rotary_factor`` and a
    ``rope_scaling`` dict carrying both ``rope_type`` and the older ``type`` key. ``head_dim`` and
    ``max_position_embeddings`` are always written (HF's dynamic NTK and the YaRN/LongRoPE factor fallback
    read the latter). HF carries the pair layout only in ``model_type``; ``layout="interleaved"`` needs an
    interleaved ``model_type`` (e.g. ``"gptj"``), else this raises instead of writing a silently wrong config.

    >>> import ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=64, base=5e5, max_position_embeddings=131072,
    ...     scaling=ropekit.Llama3(factor=8.0, original_max_position_embeddings=8192))
    >>> to_hf(cfg)["rope_parameters"]["rope_type"], to_hf(cfg, legacy=True)["rope_theta"]
    ('llama3', 500000.0)
    """
    if not isinstance(cfg, RopeConfig):
        raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
    _check_layout(cfg, model_type)
    params = _scaling_keys(cfg)
    prf = _partial(cfg)
    out: dict[str, Any] = {"head_dim": cfg.head_dim}
    if model_type is not None:
        out["model_type"] = model_type
    max_pos = cfg.max_position_embeddings
    if max_pos is None and isinstance(cfg.scaling, DynamicNTK):
        max_pos = cfg.scaling.original_max_position_embeddings
    if max_pos is not None:
        out["max_position_embeddings"] = max_pos
    if legacy:
        out["rope_theta"] = cfg.base
        if prf is not None:
            out["partial_rotary_factor"] = prf
        if params["rope_type"] != "default":
            out["rope_scaling"] = {"type": params["rope_type"], **params}
        if isinstance(cfg.scaling, LongRoPE):  # transformers 4.x Phi-3 reads L0 from the top level
            out["original_max_position_embeddings"] = cfg.scaling.original_max_position_embeddings
        return out
    rope = {"rope_theta": cfg.base, **params}
    if prf is not None:
        rope["partial_rotary_factor"] = prf
    out["rope_parameters"] = rope
    return out


def to_hf_per_layer_type(configs: Mapping[str, RopeConfig], *, model_type: str | None = None) -> dict[str, Any]:
    """transformers v5 ``rope_parameters`` nested per layer type (Gemma 3 style), e.g.
    ``{"full_attention": cfg_global, "sliding_attention": cfg_local}``. The configs must agree on
    ``head_dim``, layout and ``max_position_embeddings`` (HF keeps those at the top level); the caller adds
    ``layer_types`` (one entry per layer) to the model config.

    >>> import ropekit
    >>> g = ropekit.RopeConfig(head_dim=128, base=1e6, scaling=ropekit.Linear(factor=8.0))
    >>> out = to_hf_per_layer_type({"full_attention": g, "sliding_attention": g.replace(base=1e4, scaling=None)})
    >>> sorted(out["rope_parameters"])
    ['full_attention', 'sliding_attention']
    """
    if not configs:
        raise ValueError("configs must map at least one layer type to a RopeConfig.")
    parts = {lt: to_hf(c, model_type=model_type) for lt, c in configs.items()}
    shared = ("head_dim", "max_position_embeddings")
    for key in shared:
        values = {p.get(key) for p in parts.values()}
        if len(values) > 1:
            raise ValueError(f"per-layer-type configs must share {key} (HF keeps it at the top level), got {values}.")
    first = next(iter(parts.values()))
    out = {k: v for k, v in first.items() if k != "rope_parameters"}
    out["rope_parameters"] = {lt: p["rope_parameters"] for lt, p in parts.items()}
    return out
