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
from ropekit.core.frequencies import longrope_default_attention, yarn_mscale
from ropekit.core.scaling import NTK, Linear, Llama3, LongRoPE, YaRN
from ropekit.core.validation import check_choice, suggest
from ropekit.interop.fields import boolean, integer, number, refuse, require, scaling_of

__all__ = ["VLLM_ROPE_TYPES", "from_vllm", "to_vllm"]

VLLM_ROPE_TYPES = ("default", "linear", "dynamic", "ntk", "yarn", "deepseek_yarn", "longrope", "su", "llama3", "mrope")
#: keys vLLM understands in rope_scaling; mrope keys pass through (see ropekit.multiaxis).
_KNOWN = {
    "rope_type", "type", "factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "mscale",
    "mscale_all_dim", "attention_factor", "attn_factor", "apply_yarn_scaling", "extrapolation_factor", "truncate",
    "short_factor", "long_factor", "short_mscale", "long_mscale", "low_freq_factor", "high_freq_factor", "alpha",
    "mixed_b", "mrope_section", "mrope_interleaved", "rope_theta", "partial_rotary_factor", "xdrope_section",
}


# -- writers, one per method: cfg -> the rope_scaling dict vLLM reads --------------------------------------
def _write_default(cfg: RopeConfig) -> dict[str, Any]:
    return {"rope_type": "default"}


def _write_linear(cfg: RopeConfig) -> dict[str, Any]:
    return {"rope_type": "linear", "factor": scaling_of(cfg, Linear).factor}


def _write_ntk(cfg: RopeConfig) -> dict[str, Any]:
    return {"rope_type": "dynamic", "alpha": scaling_of(cfg, NTK).alpha}


def _write_llama3(cfg: RopeConfig) -> dict[str, Any]:
    sc = scaling_of(cfg, Llama3)
    return {"rope_type": "llama3", "factor": sc.factor, "low_freq_factor": sc.low_freq_factor,
            "high_freq_factor": sc.high_freq_factor,
            "original_max_position_embeddings": sc.original_max_position_embeddings}


def _write_yarn(cfg: RopeConfig) -> dict[str, Any]:
    sc = scaling_of(cfg, YaRN)
    rs: dict[str, Any] = {"factor": sc.factor, "original_max_position_embeddings": sc.original_max_position_embeddings,
                          "beta_fast": sc.beta_fast, "beta_slow": sc.beta_slow}
    if sc.attention_factor is None and sc.mscale and sc.mscale_all_dim:
        rs.update(rope_type="deepseek_yarn", mscale=sc.mscale, mscale_all_dim=sc.mscale_all_dim, attn_factor=1.0)
    else:  # vLLM multiplies g(s) by attn_factor; older vLLM ignored attention_factor, so never rely on it
        rs.update(rope_type="yarn", attn_factor=cfg.attention_factor / yarn_mscale(sc.factor))
    if not sc.truncate:
        rs["truncate"] = False
    return rs


def _write_longrope(cfg: RopeConfig) -> dict[str, Any]:
    sc = scaling_of(cfg, LongRoPE)
    if cfg.layout != "half":
        raise refuse("longrope", "vllm", "vLLM's LongRoPE is NeoX-style only (layout='half').")
    rs = {"rope_type": "longrope", "short_factor": list(sc.short_factor), "long_factor": list(sc.long_factor),
          "original_max_position_embeddings": sc.original_max_position_embeddings,
          "short_mscale": cfg.attention_factor, "long_mscale": cfg.attention_factor}
    if sc.factor is not None:
        rs["factor"] = sc.factor
    return rs


def to_vllm(cfg: RopeConfig) -> dict[str, Any]:
    """``get_rope`` keyword arguments for ``cfg``.

    >>> import ropekit
    >>> out = to_vllm(ropekit.RopeConfig(head_dim=128, base=1e6, max_position_embeddings=131072,
    ...               scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=32768)))
    >>> out["is_neox_style"], out["rope_scaling"]["rope_type"], out["rope_scaling"]["attn_factor"]
    (True, 'yarn', 1.0)
    """
    from ropekit.interop.dialects import writer  # here: dialects.py imports this module's readers and writers

    if not isinstance(cfg, RopeConfig):
        raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
    rs = writer(cfg.method, "vllm")(cfg)
    max_pos = cfg.max_position_embeddings or cfg.original_max_position_embeddings
    return {"head_size": cfg.head_dim, "rotary_dim": cfg.rotary_dim, "max_position": max_pos, "base": cfg.base,
            "is_neox_style": cfg.layout == "half", "rope_scaling": rs}


def _num(d: Mapping[str, Any], key: str, default: float | None = None) -> float | None:
    v = d.get(key)  # an explicit None means absent, as in HF
    return default if v is None else number(key, v)


def _req(rs: Mapping[str, Any], key: str, rt: str) -> float:
    return number(key, require(rs, key, f"vLLM rope_type {rt!r}"))


def _opt_int(name: str, v: Any) -> int | None:
    return None if v is None else integer(name, v)


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
    from ropekit.interop.dialects import reader  # here: dialects.py imports this module's readers and writers

    if not isinstance(d, Mapping):
        raise TypeError(f"d must be a dict, got {type(d).__name__}.")
    if "rope_scaling" in d or "head_size" in d:
        inner = d.get("rope_scaling") or {}
        if not isinstance(inner, Mapping):
            raise TypeError(f"rope_scaling must be a dict, got {type(inner).__name__}.")
        rs = dict(inner)
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
    bad = [k for k in rs if not isinstance(k, str)]
    if bad:
        raise TypeError(f"vLLM rope_scaling keys must be strings, got {bad[0]!r}.")
    unknown = set(rs) - _KNOWN
    if unknown:
        key = sorted(unknown)[0]
        raise ValueError(f"unknown vLLM rope_scaling key {key!r}." + suggest(key, sorted(_KNOWN)))
    for key in ("mixed_b", "xdrope_section"):
        if rs.get(key) is not None:
            raise ValueError(f"vLLM key {key!r} has no ropekit RopeConfig equivalent.")
    ext = _num(rs, "extrapolation_factor", 1.0)
    if ext != 1:
        raise ValueError(f"extrapolation_factor={ext} blends YaRN's ramp partially; ropekit's YaRN needs 1.")
    rt = rs.get("rope_type", rs.get("type", "default")) or "default"
    check_choice("rope_type", rt, VLLM_ROPE_TYPES)
    prf = rs.get("partial_rotary_factor")
    max_position = _opt_int("max_position", max_position)
    L0 = _opt_int("original_max_position_embeddings", rs.get("original_max_position_embeddings") or None)
    if is_neox_style is not None:
        is_neox_style = boolean("is_neox_style", is_neox_style)
    layout = "half" if is_neox_style in (None, True) else "interleaved"
    method = _METHOD[rt]
    if method == "longrope" and layout != "half":
        raise ValueError("vLLM's LongRoPE is NeoX-style only (is_neox_style=True).")
    scaling = reader(method, "vllm")(rs, rt, L0 or max_position, max_position)
    return RopeConfig(head_dim=integer("head_size", head_dim), base=number("base", base), layout=layout,
                      rotary_dim=None if rotary_dim is None or prf is not None else integer("rotary_dim", rotary_dim),
                      partial_rotary_factor=None if prf is None else number("partial_rotary_factor", prf),
                      max_position_embeddings=max_position, scaling=scaling)


#: the ropekit method each vLLM rope_type names (dynamic/ntk carry either alpha or factor: static NTK either way)
_METHOD = {"default": "default", "mrope": "default", "linear": "linear", "dynamic": "ntk", "ntk": "ntk",
           "yarn": "yarn", "deepseek_yarn": "yarn", "longrope": "longrope", "su": "longrope", "llama3": "llama3"}


def _need_L0(rt: str, L0: int | None) -> int:
    if L0 is None:
        raise ValueError(f"vLLM rope_type {rt!r} needs original_max_position_embeddings or max_position.")
    return L0


# -- readers, one per method: (rope_scaling, its rope_type, L0 or max_position, max_position) -> scaling ----
def _read_default(rs: Mapping[str, Any], rt: str, L0: int | None, max_position: int | None) -> None:
    return None


def _read_linear(rs: Mapping[str, Any], rt: str, L0: int | None, max_position: int | None) -> Linear:
    return Linear(factor=_req(rs, "factor", rt))


def _read_ntk(rs: Mapping[str, Any], rt: str, L0: int | None, max_position: int | None) -> NTK:
    if rs.get("alpha") is not None:
        return NTK(alpha=number("alpha", rs["alpha"]))
    s = _req(rs, "factor", rt)
    if rt == "ntk":
        raise ValueError("vLLM 'ntk' with factor (per-frequency s^(-(2i+2)/d)) has no ropekit equivalent.")
    return NTK(alpha=s * s - s + 1)  # vLLM evaluates dynamic NTK once at length L0 * s


def _read_llama3(rs: Mapping[str, Any], rt: str, L0: int | None, max_position: int | None) -> Llama3:
    return Llama3(factor=_req(rs, "factor", rt), original_max_position_embeddings=_need_L0(rt, L0),
                  low_freq_factor=_req(rs, "low_freq_factor", rt), high_freq_factor=_req(rs, "high_freq_factor", rt))


def _read_yarn(rs: Mapping[str, Any], rt: str, L0: int | None, max_position: int | None) -> YaRN:
    s = _req(rs, "factor", rt)
    f: float = _num(rs, "attn_factor", 1.0)  # type: ignore[assignment]
    common: dict[str, Any] = {"factor": s, "original_max_position_embeddings": _need_L0(rt, L0),
                              "beta_fast": _num(rs, "beta_fast", 32.0), "beta_slow": _num(rs, "beta_slow", 1.0),
                              "truncate": boolean("truncate", rs.get("truncate", True))}
    YaRN(**common)  # validate factor and betas before any arithmetic on them
    if rt == "deepseek_yarn":
        m, mad = _num(rs, "mscale", 1.0), _num(rs, "mscale_all_dim", 0.0)
        YaRN(**common, mscale=m, mscale_all_dim=mad)  # mscales >= 0, so g(s, mad) >= 1 below
        attn = yarn_mscale(s, m) / yarn_mscale(s, mad) * f  # type: ignore[arg-type]
        if f == 1.0 and m and mad:
            return YaRN(**common, mscale=m, mscale_all_dim=mad)
        return YaRN(**common, attention_factor=attn)
    attn = (yarn_mscale(s) if boolean("apply_yarn_scaling", rs.get("apply_yarn_scaling", True)) else 1.0) * f
    return YaRN(**common, attention_factor=None if math.isclose(attn, yarn_mscale(s), rel_tol=1e-12) else attn)


def _read_longrope(rs: Mapping[str, Any], rt: str, L0: int | None, max_position: int | None) -> LongRoPE:
    L0 = _need_L0(rt, L0)
    short_m, long_m = _num(rs, "short_mscale"), _num(rs, "long_mscale")
    if short_m is not None and long_m is not None and not math.isclose(short_m, long_m):
        raise ValueError(
            f"short_mscale={short_m} != long_mscale={long_m}: ropekit's LongRoPE has one attention factor."
        )
    attn = short_m if short_m is not None else long_m
    factor = _num(rs, "factor")
    if factor is None and max_position is not None:
        factor = max_position / L0
    if attn is not None and factor is not None and factor > 0 and L0 > 1:
        default = longrope_default_attention(factor, L0)
        attn = None if math.isclose(attn, default, rel_tol=1e-12) else attn
    short, long = (require(rs, k, f"vLLM rope_type {rt!r}") for k in ("short_factor", "long_factor"))
    for key, v in (("short_factor", short), ("long_factor", long)):
        if not isinstance(v, (list, tuple)):
            raise TypeError(f"{key} must be a list of numbers, got {type(v).__name__}.")
    return LongRoPE(short_factor=tuple(number("short_factor[i]", x) for x in short),
                    long_factor=tuple(number("long_factor[i]", x) for x in long),
                    original_max_position_embeddings=L0, factor=factor, attention_factor=attn)
