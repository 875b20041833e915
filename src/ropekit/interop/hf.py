"""Hugging Face config dialect: ``rope_parameters`` (transformers v5, possibly nested per layer type) and
the legacy ``rope_scaling`` / ``rope_theta`` / ``partial_rotary_factor`` / ``type`` keys.

Resolution follows transformers' ``standardize_rope_params``: keys inside the RoPE dict win over
top-level ones, except Phi-3's top-level ``original_max_position_embeddings``, which HF gives priority.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.scaling import NTK, DynamicNTK, Linear, Llama3, LongRoPE, Proportional, YaRN
from ropekit.core.validation import suggest
from ropekit.interop.fields import boolean, integer, number, refuse, require, scaling_of

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
            raise ValueError(
                f"this config has per-layer-type RoPE parameters {nested}: read the whole model with "
                "ropekit.RopePlan.from_hf(config), or one type with layer_type=."
            )
        if layer_type not in nested:
            raise ValueError(f"layer_type={layer_type!r} is not one of {nested}." + suggest(layer_type, nested))
        return dict(params[layer_type])
    if layer_type is not None:
        raise ValueError(f"layer_type={layer_type!r} given, but this config's RoPE parameters are not nested.")
    return dict(params)


def _head_dim(d: Mapping[str, Any]) -> int:
    if d.get("head_dim"):
        return integer("head_dim", d["head_dim"])
    if d.get("hidden_size") is None or d.get("num_attention_heads") is None:
        raise ValueError("HF config has neither head_dim nor hidden_size/num_attention_heads.")
    return integer("hidden_size", d["hidden_size"]) // integer("num_attention_heads", d["num_attention_heads"])


def _rope_type(p: Mapping[str, Any]) -> str:
    rt = p.get("rope_type", p.get("type", "default")) or "default"
    if not isinstance(rt, str):
        raise TypeError(f"HF rope_type must be a string, got {type(rt).__name__} {rt!r}.")
    rt = _ALIASES.get(rt, rt)
    if rt not in HF_ROPE_TYPES:
        known = list(HF_ROPE_TYPES)
        raise ValueError(f"unknown HF rope_type {rt!r}; ropekit reads {known}." + suggest(rt, known))
    return rt


def _method(rt: str, p: Mapping[str, Any]) -> str:
    """The ropekit method an HF rope_type means (HF's names are ropekit's, bar HunYuan's alpha)."""
    if rt == "dynamic" and p.get("alpha") is not None and p.get("factor") is None:
        return "ntk"  # HunYuan's "dynamic" + alpha is a static NTK base change
    return rt


def _num(p: Mapping[str, Any], key: str, rt: str) -> float:
    return number(key, require(p, key, f"HF rope_type {rt!r} (in rope_parameters/rope_scaling)"))


def _opt(p: Mapping[str, Any], key: str) -> float | None:
    return None if p.get(key) is None else number(key, p[key])


def _max_pos(d: Mapping[str, Any]) -> int | None:
    v = d.get("max_position_embeddings")
    return None if v is None else integer("max_position_embeddings", v)


def _L0(p: Mapping[str, Any], d: Mapping[str, Any], rt: str) -> int:
    # HF: Phi-3's top-level original_max_position_embeddings wins; else the dict's; else max_position_embeddings
    for where, src, key in (("config", d, "original_max_position_embeddings"),
                            ("rope_parameters", p, "original_max_position_embeddings"),
                            ("config", d, "max_position_embeddings")):
        if src.get(key):
            return integer(f"{where} {key}", src[key])
    raise ValueError(f"HF rope_type {rt!r} needs original_max_position_embeddings or max_position_embeddings.")


def _factor_or_derived(p: Mapping[str, Any], d: Mapping[str, Any], L0: int) -> float | None:
    """HF's fallback for a missing factor: max_position_embeddings / L0 (DeepSeek-V3, Phi-3)."""
    factor = _opt(p, "factor")
    max_pos = _max_pos(d)
    return max_pos / L0 if factor is None and max_pos is not None else factor


def _factors(p: Mapping[str, Any], key: str, rt: str) -> tuple[float, ...]:
    values = require(p, key, f"HF rope_type {rt!r}")
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{key} must be a list of numbers, got {type(values).__name__}.")
    return tuple(number(f"{key}[{i}]", v) for i, v in enumerate(values))


# -- readers, one per method: (rope dict, whole config) -> scaling ---------------------------------------
def _read_default(p: Mapping[str, Any], d: Mapping[str, Any]) -> None:
    return None


def _read_linear(p: Mapping[str, Any], d: Mapping[str, Any]) -> Linear:
    return Linear(factor=_num(p, "factor", "linear"))


def _read_ntk(p: Mapping[str, Any], d: Mapping[str, Any]) -> NTK:
    return NTK(alpha=_num(p, "alpha", "dynamic"))


def _read_dynamic(p: Mapping[str, Any], d: Mapping[str, Any]) -> DynamicNTK:
    max_pos = _max_pos(d)
    if max_pos is None:
        raise ValueError("HF rope_type 'dynamic' needs max_position_embeddings in the config.")
    return DynamicNTK(factor=_num(p, "factor", "dynamic"), original_max_position_embeddings=max_pos)


def _read_proportional(p: Mapping[str, Any], d: Mapping[str, Any]) -> Proportional:
    return Proportional(partial_rotary_factor=number("partial_rotary_factor", p.get("partial_rotary_factor", 1.0)),
                        factor=number("factor", p.get("factor", 1.0)))


def _read_llama3(p: Mapping[str, Any], d: Mapping[str, Any]) -> Llama3:
    return Llama3(factor=_num(p, "factor", "llama3"), original_max_position_embeddings=_L0(p, d, "llama3"),
                  low_freq_factor=_num(p, "low_freq_factor", "llama3"),
                  high_freq_factor=_num(p, "high_freq_factor", "llama3"))


def _read_yarn(p: Mapping[str, Any], d: Mapping[str, Any]) -> YaRN:
    L0 = _L0(p, d, "yarn")
    factor = _factor_or_derived(p, d, L0)
    if factor is None:
        raise ValueError("HF rope_type 'yarn' needs factor (or max_position_embeddings to derive it).")
    return YaRN(
        factor=factor,
        original_max_position_embeddings=L0,
        beta_fast=_opt(p, "beta_fast") or 32.0,  # HF treats 0/None as the default
        beta_slow=_opt(p, "beta_slow") or 1.0,
        mscale=_opt(p, "mscale"),
        mscale_all_dim=_opt(p, "mscale_all_dim"),
        attention_factor=_opt(p, "attention_factor"),
        truncate=boolean("truncate", p.get("truncate", True)),
    )


def _read_longrope(p: Mapping[str, Any], d: Mapping[str, Any]) -> LongRoPE:
    L0 = _L0(p, d, "longrope")
    return LongRoPE(short_factor=_factors(p, "short_factor", "longrope"),
                    long_factor=_factors(p, "long_factor", "longrope"),
                    original_max_position_embeddings=L0, factor=_factor_or_derived(p, d, L0),
                    attention_factor=_opt(p, "attention_factor"))


def from_hf(config: Any, *, layer_type: str | None = None) -> RopeConfig:
    """``RopeConfig`` from an HF ``PretrainedConfig`` or config.json dict.

    >>> cfg = from_hf({"hidden_size": 576, "num_attention_heads": 9, "rope_theta": 100000.0,
    ...                "max_position_embeddings": 8192})
    >>> cfg.head_dim, cfg.base, cfg.method
    (64, 100000.0, 'default')
    """
    from ropekit.interop.dialects import reader  # here: dialects.py imports this module's readers and writers

    d = config_dict(config)
    p = rope_dict(d, layer_type)
    rt = _rope_type(p)
    base = p.get("rope_theta", d.get("rope_theta", d.get("rotary_emb_base", 10000.0)))
    head_dim = _head_dim(d)
    scaling = reader(_method(rt, p), "hf")(p, d)
    rotary_dim = None
    prf = None
    if rt != "proportional":
        prf = p.get("partial_rotary_factor", d.get("partial_rotary_factor", d.get("rotary_pct")))
        if d.get("rotary_dim") and prf is None:  # GPT-J / CodeGen give the rotated width directly
            rotary_dim = integer("rotary_dim", d["rotary_dim"])
    model_type = d.get("model_type")
    layout = "interleaved" if isinstance(model_type, str) and model_type in INTERLEAVED_MODEL_TYPES else "half"
    return RopeConfig(
        head_dim=head_dim,
        base=number("rope_theta", base),
        layout=layout,
        rotary_dim=rotary_dim,
        partial_rotary_factor=None if prf is None else number("partial_rotary_factor", prf),
        max_position_embeddings=_max_pos(d),
        scaling=scaling,
    )


# -- writers, one per method: cfg -> rope_type and the scaling keys HF reads (no rope_theta / partial factor) --
def _write_default(cfg: RopeConfig) -> dict[str, Any]:
    return {"rope_type": "default"}


def _write_linear(cfg: RopeConfig) -> dict[str, Any]:
    return {"rope_type": "linear", "factor": scaling_of(cfg, Linear).factor}


def _write_dynamic(cfg: RopeConfig) -> dict[str, Any]:
    sc = scaling_of(cfg, DynamicNTK)
    if cfg.max_position_embeddings not in (None, sc.original_max_position_embeddings):
        raise refuse("dynamic", "hf", (
            f"HF 'dynamic' grows the base past config.max_position_embeddings, so it must equal "
            f"DynamicNTK.original_max_position_embeddings={sc.original_max_position_embeddings}; got "
            f"max_position_embeddings={cfg.max_position_embeddings}. Use cfg.replace(max_position_embeddings=...)."
        ))
    return {"rope_type": "dynamic", "factor": sc.factor}


def _write_proportional(cfg: RopeConfig) -> dict[str, Any]:
    sc = scaling_of(cfg, Proportional)
    return {"rope_type": "proportional", "partial_rotary_factor": sc.partial_rotary_factor, "factor": sc.factor}


def _write_llama3(cfg: RopeConfig) -> dict[str, Any]:
    sc = scaling_of(cfg, Llama3)
    return {
        "rope_type": "llama3",
        "factor": sc.factor,
        "original_max_position_embeddings": sc.original_max_position_embeddings,
        "low_freq_factor": sc.low_freq_factor,
        "high_freq_factor": sc.high_freq_factor,
    }


def _write_yarn(cfg: RopeConfig) -> dict[str, Any]:
    sc = scaling_of(cfg, YaRN)
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


def _write_longrope(cfg: RopeConfig) -> dict[str, Any]:
    sc = scaling_of(cfg, LongRoPE)
    out: dict[str, Any] = {
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
    prf = float(cfg.partial_rotary_factor)  # type: ignore[arg-type]  # RopeConfig always resolves it
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
    from ropekit.interop.dialects import writer  # here: dialects.py imports this module's readers and writers

    _check_layout(cfg, model_type)
    params = writer(cfg.method, "hf")(cfg)
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
