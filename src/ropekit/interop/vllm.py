"""vLLM dialect: ``get_rope(head_size, rotary_dim, max_position, base, is_neox_style, rope_scaling)``.

:func:`to_vllm` returns those keyword arguments, with ``rope_scaling`` in the HF-like dict vLLM reads plus
its own keys. :func:`from_vllm` reads what vLLM *computes* (``semantics="vllm"``, the default), which is not
always what the same dict means to HF:

- ``{"rope_type": "dynamic", "factor": s}``: vLLM freezes the base at length L0*s, i.e. static NTK with
  alpha = s^2 - s + 1 (HF grows it per sequence). ``{"rope_type": "dynamic", "alpha": a}`` is static NTK.
- ``{"rope_type": "yarn", "attn_factor": f}``: cos/sin scale g(s) * f (``apply_yarn_scaling: false``
  drops g(s)); ``"deepseek_yarn"`` uses g(s, mscale) / g(s, mscale_all_dim) * f with mscale_all_dim
  defaulting to 0 (HF falls back to g(s) unless both are set).
- ``{"rope_type": "longrope"}``: ``short_mscale`` / ``long_mscale`` override the attention factor.
Keys with no ropekit meaning (``mixed_b``, ``extrapolation_factor`` != 1, ``xdrope_section``) raise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.frequencies import yarn_mscale
from ropekit.core.scaling import NTK, DynamicNTK, Linear, Llama3, LongRoPE, Proportional, Scaling, YaRN
from ropekit.core.validation import check_choice, suggest

__all__ = ["VLLM_ROPE_TYPES", "from_vllm", "to_vllm"]

VLLM_ROPE_TYPES = ("default", "linear", "dynamic", "ntk", "yarn", "deepseek_yarn", "longrope", "su", "llama3", "mrope")
#: keys vLLM understands in rope_scaling; mrope keys pass through (see ropekit.multiaxis).
_KNOWN = {
    "rope_type", "type", "factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "mscale",
    "mscale_all_dim", "attention_factor", "attn_factor", "apply_yarn_scaling", "extrapolation_factor", "truncate",
    "short_factor", "long_factor", "short_mscale", "long_mscale", "low_freq_factor", "high_freq_factor", "alpha",
    "mixed_b", "mrope_section", "mrope_interleaved", "rope_theta", "partial_rotary_factor", "xdrope_section",
}


def to_vllm(cfg: RopeConfig) -> dict[str, Any]:
    """``get_rope`` keyword arguments for ``cfg``.

    >>> import ropekit
    >>> out = to_vllm(ropekit.RopeConfig(head_dim=128, base=1e6, max_position_embeddings=131072,
    ...               scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=32768)))
    >>> out["is_neox_style"], out["rope_scaling"]["rope_type"], out["rope_scaling"]["attn_factor"]
    (True, 'yarn', 1.0)
    """
    if not isinstance(cfg, RopeConfig):
        raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
    sc = cfg.scaling
    rs: dict[str, Any]
    if sc is None:
        rs = {"rope_type": "default"}
    elif isinstance(sc, Linear):
        rs = {"rope_type": "linear", "factor": sc.factor}
    elif isinstance(sc, NTK):
        rs = {"rope_type": "dynamic", "alpha": sc.alpha}
    elif isinstance(sc, DynamicNTK):
        raise ValueError(
            "vLLM's 'dynamic' freezes the base at L0 * factor (static NTK with alpha = s^2 - s + 1), it never grows "
            "it per sequence as HF does; convert deliberately with cfg.replace(scaling=ropekit.NTK(alpha=...))."
        )
    elif isinstance(sc, Proportional):
        raise ValueError("ropekit does not write vLLM's Gemma-4 proportional rope (its semantics are unverified).")
    elif isinstance(sc, Llama3):
        rs = {"rope_type": "llama3", "factor": sc.factor, "low_freq_factor": sc.low_freq_factor,
              "high_freq_factor": sc.high_freq_factor,
              "original_max_position_embeddings": sc.original_max_position_embeddings}
    elif isinstance(sc, YaRN):
        rs = {"factor": sc.factor, "original_max_position_embeddings": sc.original_max_position_embeddings,
              "beta_fast": sc.beta_fast, "beta_slow": sc.beta_slow}
        if sc.attention_factor is None and sc.mscale and sc.mscale_all_dim:
            rs.update(rope_type="deepseek_yarn", mscale=sc.mscale, mscale_all_dim=sc.mscale_all_dim, attn_factor=1.0)
        else:  # vLLM multiplies g(s) by attn_factor; older vLLM ignored attention_factor, so never rely on it
            rs.update(rope_type="yarn", attn_factor=cfg.attention_factor / yarn_mscale(sc.factor))
        if not sc.truncate:
            rs["truncate"] = False
    else:
        assert isinstance(sc, LongRoPE)
        rs = {"rope_type": "longrope", "short_factor": list(sc.short_factor), "long_factor": list(sc.long_factor),
              "original_max_position_embeddings": sc.original_max_position_embeddings,
              "short_mscale": cfg.attention_factor, "long_mscale": cfg.attention_factor}
        if sc.factor is not None:
            rs["factor"] = sc.factor
    max_pos = cfg.max_position_embeddings or cfg.original_max_position_embeddings
    return {"head_size": cfg.head_dim, "rotary_dim": cfg.rotary_dim, "max_position": max_pos, "base": cfg.base,
            "is_neox_style": cfg.layout == "half", "rope_scaling": rs}


def _num(d: Mapping[str, Any], key: str, default: float | None = None) -> float | None:
    v = d.get(key, default)
    return None if v is None else float(v)


def from_vllm(
    d: Mapping[str, Any],
    *,
    head_dim: int | None = None,
    base: float | None = None,
    max_position: int | None = None,
    rotary_dim: int | None = None,
    is_neox_style: bool | None = None,
) -> RopeConfig:
    """``RopeConfig`` for what vLLM computes from ``d``: either ``get_rope`` kwargs (as :func:`to_vllm`
    writes) or a bare ``rope_scaling`` dict plus the keyword arguments here. ``mrope_section`` /
    ``mrope_interleaved`` are accepted and not part of the result: pass them to
    :func:`ropekit.multiaxis.apply_mrope` with the returned config.

    >>> cfg = from_vllm({"rope_type": "dynamic", "alpha": 1000.0}, head_dim=128, base=1e4, max_position=32768)
    >>> cfg.method, cfg.scaling.alpha
    ('ntk', 1000.0)
    """
    if not isinstance(d, Mapping):
        raise TypeError(f"d must be a dict, got {type(d).__name__}.")
    if "rope_scaling" in d or "head_size" in d:
        rs = dict(d.get("rope_scaling") or {})
        head_dim = d.get("head_size", head_dim)
        rotary_dim = d.get("rotary_dim", rotary_dim)
        max_position = d.get("max_position", max_position)
        base = d.get("base", base)
        is_neox_style = d.get("is_neox_style", is_neox_style)
    else:
        rs = dict(d)
    if head_dim is None:
        raise ValueError("from_vllm needs head_dim (get_rope's head_size).")
    base = rs.get("rope_theta", base)
    if base is None:
        raise ValueError("from_vllm needs base (get_rope's base, or rope_theta in the dict).")
    unknown = set(rs) - _KNOWN
    if unknown:
        key = sorted(unknown)[0]
        raise ValueError(f"unknown vLLM rope_scaling key {key!r}." + suggest(key, sorted(_KNOWN)))
    for key in ("mixed_b", "xdrope_section"):
        if rs.get(key) is not None:
            raise ValueError(f"vLLM key {key!r} has no ropekit RopeConfig equivalent.")
    if rs.get("extrapolation_factor", 1) != 1:
        raise ValueError(f"extrapolation_factor={rs['extrapolation_factor']} blends YaRN's ramp partially; "
                         "ropekit's YaRN needs 1.")
    rt = rs.get("rope_type", rs.get("type", "default")) or "default"
    check_choice("rope_type", rt, VLLM_ROPE_TYPES)
    prf = rs.get("partial_rotary_factor")
    L0 = rs.get("original_max_position_embeddings") or max_position
    scaling = _scaling(rt, rs, L0, max_position)
    layout = "half" if is_neox_style in (None, True) else "interleaved"
    if isinstance(scaling, LongRoPE) and layout != "half":
        raise ValueError("vLLM's LongRoPE is NeoX-style only (is_neox_style=True).")
    return RopeConfig(head_dim=int(head_dim), base=float(base), layout=layout,
                      rotary_dim=None if rotary_dim is None or prf is not None else int(rotary_dim),
                      partial_rotary_factor=None if prf is None else float(prf),
                      max_position_embeddings=None if max_position is None else int(max_position), scaling=scaling)


def _scaling(rt: str, rs: dict[str, Any], L0: Any, max_position: int | None) -> Scaling | None:
    if rt in ("default", "mrope"):
        return None
    if rt == "linear":
        return Linear(factor=float(rs["factor"]))
    if rt in ("dynamic", "ntk"):
        if rs.get("alpha") is not None:
            return NTK(alpha=float(rs["alpha"]))
        s = float(rs["factor"])
        if rt == "ntk":
            raise ValueError("vLLM 'ntk' with factor (per-frequency s^(-(2i+2)/d)) has no ropekit equivalent.")
        return NTK(alpha=s * s - s + 1)  # vLLM evaluates dynamic NTK once at length L0 * s
    if L0 is None:
        raise ValueError(f"vLLM rope_type {rt!r} needs original_max_position_embeddings or max_position.")
    L0 = int(L0)
    if rt == "llama3":
        return Llama3(factor=float(rs["factor"]), original_max_position_embeddings=L0,
                      low_freq_factor=float(rs["low_freq_factor"]), high_freq_factor=float(rs["high_freq_factor"]))
    if rt in ("yarn", "deepseek_yarn"):
        s = float(rs["factor"])
        f = _num(rs, "attn_factor", 1.0)
        common = {"factor": s, "original_max_position_embeddings": L0,
                  "beta_fast": _num(rs, "beta_fast", 32.0), "beta_slow": _num(rs, "beta_slow", 1.0),
                  "truncate": bool(rs.get("truncate", True))}
        if rt == "deepseek_yarn":
            m, mad = _num(rs, "mscale", 1.0), _num(rs, "mscale_all_dim", 0.0)
            attn = yarn_mscale(s, m) / yarn_mscale(s, mad) * f
            if f == 1.0 and m and mad:
                return YaRN(**common, mscale=m, mscale_all_dim=mad)
            return YaRN(**common, attention_factor=attn)
        attn = (yarn_mscale(s) if rs.get("apply_yarn_scaling", True) else 1.0) * f
        return YaRN(**common, attention_factor=None if math.isclose(attn, yarn_mscale(s), rel_tol=1e-12) else attn)
    short_m, long_m = rs.get("short_mscale"), rs.get("long_mscale")
    if short_m is not None and long_m is not None and not math.isclose(float(short_m), float(long_m)):
        raise ValueError(
            f"short_mscale={short_m} != long_mscale={long_m}: ropekit's LongRoPE has one attention factor."
        )
    attn = short_m if short_m is not None else long_m
    factor = rs.get("factor")
    if factor is None and max_position is not None:
        factor = max_position / L0
    if attn is not None and factor is not None:
        default = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(L0))
        attn = None if math.isclose(float(attn), default, rel_tol=1e-12) else attn
    return LongRoPE(short_factor=rs["short_factor"], long_factor=rs["long_factor"], original_max_position_embeddings=L0,
                    factor=None if factor is None else float(factor),
                    attention_factor=None if attn is None else float(attn))
