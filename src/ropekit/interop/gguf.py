"""GGUF dialect (llama.cpp model files): ``{arch}.rope.*`` keys and the ``rope_freqs`` /
``rope_factors_long`` / ``rope_factors_short`` tensors.

Layout: llama.cpp picks the pair layout from the architecture, not from a key. Its converter stores the q/k
weights of NORM-mode architectures (``llama``, ``mistral``, ...) permuted to GPT-J pairs, so
:func:`from_gguf` reports ``layout="interleaved"`` for them: that is the truth *for the GGUF's weights*. The
HF checkpoint of the same model pairs ``i <-> i + d/2`` ("half"); ``permute_qk(w, n_heads, head_dim,
src="interleaved", dst="half")`` maps the GGUF's q/k weights back to HF's. NEOX-mode architectures
(``qwen2``, ``phi3``, ``gemma``, ...) keep HF's layout.

This module reads; :mod:`ropekit.interop.gguf_write` writes. The ``gguf`` package is imported inside the
functions that need it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.frequencies import default_inv_freq, longrope_default_attention, yarn_mscale
from ropekit.core.scaling import NTK, Linear, Llama3, LongRoPE, Scaling, YaRN
from ropekit.core.validation import check_choice, suggest
from ropekit.interop.fields import MAX_INT, folded_ntk_base, integer, number
from ropekit.interop.gguf_check import check_gguf_file

__all__ = [
    "GGUF_ARCH_LAYOUT",
    "GGUFFields",
    "from_gguf",
    "from_gguf_metadata",
    "gguf_metadata",
]

_NORM = (
    "llama", "llama4", "deci", "mistral3", "baichuan", "starcoder", "internlm2", "minicpm", "xverse", "command-r",
    "cohere2", "olmo", "arctic", "deepseek", "deepseek2", "chatglm", "granite", "granitemoe", "chameleon",
    "bailingmoe", "smollm3", "arcee", "plm", "refact", "gptj",
)
_NEOX = (
    "falcon", "grok", "dbrx", "bert", "nomic-bert", "jina-bert-v2", "stablelm", "bitnet", "qwen", "qwen2",
    "qwen2moe", "qwen3", "qwen3moe", "olmo2", "olmoe", "phi2", "phi3", "phimoe", "plamo", "gemma", "gemma2",
    "gemma3", "starcoder2", "openelm", "gptneox", "codeshell", "orion", "nemotron", "exaone", "minicpm3", "dots1",
    "hunyuan-moe", "gpt-oss", "ernie4_5", "glm4",
)
#: llama.cpp rope mode per architecture, as the pair layout of the GGUF's q/k weights.
GGUF_ARCH_LAYOUT: dict[str, str] = {**{a: "interleaved" for a in _NORM}, **{a: "half" for a in _NEOX}}

# the DeepSeek converters store 0.1 * mscale_all_dim in yarn_log_multiplier (llama.cpp TAG_DEEPSEEK2_YARN_LOG_MUL_FIX)
_LOG_MUL_UNIT = 0.1
# static NTK folded into freq_base: the alpha and the base before folding, under keys llama.cpp ignores
_NTK_ALPHA, _NTK_BASE = "rope.ropekit.folded_ntk_alpha", "rope.ropekit.unfolded_freq_base"


def _arch_layout(arch: str, layout: str | None) -> str:
    if layout is not None:
        return check_choice("layout", layout, ("half", "interleaved"))
    if arch not in GGUF_ARCH_LAYOUT:
        raise ValueError(
            f"unknown GGUF architecture {arch!r}: ropekit does not know whether llama.cpp runs it in NORM "
            "(interleaved) or NEOX (half) mode; pass layout='half' or layout='interleaved'."
            + suggest(arch, GGUF_ARCH_LAYOUT)
        )
    return GGUF_ARCH_LAYOUT[arch]


def gguf_metadata(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Scalar/string GGUF key-value pairs and the RoPE tensors (float64) of the file at ``path``.

    The file's structure is checked first (:func:`ropekit.interop.gguf_check.check_gguf_file`), so a truncated
    or corrupt file raises ``ValueError`` quickly instead of misleading ``gguf.GGUFReader``. Parsing with
    ``GGUFReader`` walks the whole vocabulary (seconds), so the small result is memoised per (path, size, mtime).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        _CACHE.clear()  # one file at a time is what callers need; keep memory flat
        _CACHE[key] = _read(path)
    kv, tensors = _CACHE[key]
    return dict(kv), {k: v.clone() for k, v in tensors.items()}


_CACHE: dict[tuple[str, int, int], tuple[dict[str, Any], dict[str, torch.Tensor]]] = {}
_ROPE_TENSORS = ("rope_freqs", "rope_factors_long", "rope_factors_short")


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    import gguf

    check_gguf_file(path)
    try:
        reader = gguf.GGUFReader(path)
    except (KeyError, IndexError, TypeError, OverflowError, ValueError) as e:  # the check above should catch these
        raise ValueError(f"{path}: gguf.GGUFReader cannot parse this file: {e}") from None
    kv: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.") or not field.types:
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY and len(field.data) > 64:
            continue  # long arrays (vocabularies) are never RoPE metadata
        kv[key] = field.contents()
    tensors = {}
    floats = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F64)
    for t in reader.tensors:
        base = t.name.removesuffix(".weight")
        if base in _ROPE_TENSORS:
            if t.tensor_type not in floats:
                raise ValueError(f"{path}: RoPE tensor {t.name} has type {t.tensor_type.name}; llama.cpp needs F32.")
            tensors[base] = torch.tensor(t.data.astype("float64").reshape(-1))
    return kv, tensors


class GGUFFields(NamedTuple):
    """What a GGUF method reader sees: the metadata, the RoPE tensors and the values every method shares."""

    kv: Mapping[str, Any]  # the file's key-value pairs
    tensors: Mapping[str, torch.Tensor]  # rope_freqs / rope_factors_long / rope_factors_short, float64
    pre: str  # "{arch}." prefix of the architecture's keys
    rotary_dim: int  # rope.dimension_count (or head_dim)
    base: float  # rope.freq_base
    ctx: int | None  # context_length


def _opt(m: GGUFFields, key: str) -> float | None:
    v = m.kv.get(m.pre + key)
    return None if v is None else number(m.pre + key, v)


def _opt_int(m: GGUFFields, key: str) -> int | None:
    v = m.kv.get(m.pre + key)
    return integer(m.pre + key, v) if v else None  # 0 means "not set" in llama.cpp


def _fit_llama3(divisors: torch.Tensor, inv: torch.Tensor, L0_hint: int | None) -> Llama3 | None:
    """Recover Llama3 parameters from llama.cpp's per-pair divisors; ``None`` when they are not llama3's."""
    s = float(divisors.max())
    if s <= 1:
        return None
    medium = (divisors > 1 + 1e-6) & (divisors < s * (1 - 1e-6))
    # medium band: 1/div = (1 - sm)/s + sm with sm = A/lambda - B, linear in 1/lambda = inv / (2 pi)
    sm = (1 / divisors[medium] - 1 / s) / (1 - 1 / s)
    x = inv[medium] / (2 * math.pi)
    if int(medium.sum()) == 1 and L0_hint is not None:  # narrow rotary dims: one point, so assume low = 1
        high = 1 + (L0_hint * float(x[0]) - 1) / float(sm[0])
        if not math.isfinite(high):
            return None
        try:
            return Llama3(factor=round(s, 6), original_max_position_embeddings=L0_hint, high_freq_factor=round(high, 6))
        except (ValueError, TypeError):
            return None
    if int(medium.sum()) < 2:
        return None
    A = float(((x - x.mean()) * (sm - sm.mean())).sum() / ((x - x.mean()) ** 2).sum())
    B = float(A * x.mean() - sm.mean())
    if not (math.isfinite(A) and math.isfinite(B)) or A <= 0 or B <= 0:
        return None
    if L0_hint is not None:
        L0 = L0_hint
        span = L0 / A
        low = B * span
    else:  # Llama 3.x all use low_freq_factor = 1; the scale of (L0, low, high) is otherwise not identifiable
        low = 1.0
        span = low / B
        if not A * span < MAX_INT:
            return None
        L0 = round(A * span)
    try:
        fit = Llama3(factor=round(s, 6), original_max_position_embeddings=int(L0), low_freq_factor=round(low, 6),
                     high_freq_factor=round(low + span, 6))
    except (ValueError, TypeError):
        return None
    return fit


# -- readers, one per method: fields -> (the base freq_base stands for, scaling) --------------------------
def _read_default(m: GGUFFields) -> tuple[float, Scaling | None]:
    return m.base, None


def _read_linear(m: GGUFFields) -> tuple[float, Scaling | None]:
    factor = _opt(m, "rope.scaling.factor")
    if factor is None:
        factor = _opt(m, "rope.scale_linear")  # pre-2023 key
    if factor is None:
        raise ValueError(f"GGUF rope.scaling.type 'linear' needs {m.pre}rope.scaling.factor.")
    return m.base, None if factor == 1.0 else Linear(factor=factor)


def _read_ntk(m: GGUFFields) -> tuple[float, Scaling | None]:
    alpha = number(m.pre + _NTK_ALPHA, m.kv[m.pre + _NTK_ALPHA])
    base = _opt(m, _NTK_BASE)
    if base is None:
        raise ValueError(f"GGUF {m.pre}{_NTK_ALPHA} needs {m.pre}{_NTK_BASE} (the base before folding).")
    cfg = RopeConfig(head_dim=m.rotary_dim, base=base, scaling=NTK(alpha=alpha))
    folded = folded_ntk_base(cfg, "gguf")
    if not math.isclose(folded, m.base, rel_tol=1e-6):  # float32 storage
        raise ValueError(f"GGUF {m.pre}rope.freq_base={m.base} is not ropekit's fold of {m.pre}{_NTK_BASE}={base} and "
                         f"{m.pre}{_NTK_ALPHA}={alpha} ({folded}): the file was edited after ropekit wrote it; drop "
                         "the ropekit keys or make them agree.")
    return base, cfg.scaling


def _read_llama3(m: GGUFFields) -> tuple[float, Scaling | None]:
    div = m.tensors["rope_freqs"]
    rd = m.rotary_dim
    if div.numel() != rd // 2:
        raise ValueError(f"rope_freqs has {div.numel()} entries, expected rotary_dim // 2 = {rd // 2}.")
    if not bool(torch.isfinite(div).all()) or not bool((div > 0).all()):
        raise ValueError("rope_freqs must hold finite divisors > 0.")
    RopeConfig(head_dim=rd, base=m.base)  # rotary_dim and base are sound before any arithmetic on them
    theta = default_inv_freq(rd, m.base)
    fit = _fit_llama3(div, theta, _opt_int(m, "rope.scaling.original_context_length"))
    if fit is not None:
        want = RopeConfig(head_dim=rd, base=m.base, scaling=fit).inv_freq()
        if torch.allclose(theta / div, want, rtol=1e-5, atol=0):
            return m.base, fit
    # arbitrary per-pair divisors: LongRoPE with identical short/long factors and no attention factor
    L0 = _opt_int(m, "rope.scaling.original_context_length") or m.ctx or 1
    return m.base, LongRoPE(short_factor=div.tolist(), long_factor=div.tolist(), original_max_position_embeddings=L0,
                            attention_factor=1.0)


def _read_longrope(m: GGUFFields) -> tuple[float, Scaling | None]:
    if "rope_factors_long" not in m.tensors or "rope_factors_short" not in m.tensors:
        raise ValueError("GGUF rope.scaling.type 'longrope' needs the rope_factors_long/short tensors.")
    L0 = _opt_int(m, "rope.scaling.original_context_length") or m.ctx
    if L0 is None:
        raise ValueError("GGUF LongRoPE needs rope.scaling.original_context_length (or context_length).")
    attn = _opt(m, "rope.scaling.attn_factor")
    lr_factor = None if m.ctx is None else m.ctx / L0
    if attn is not None and lr_factor is not None and L0 > 1:
        default = longrope_default_attention(lr_factor, L0)
        attn = None if math.isclose(attn, default, rel_tol=1e-6) else attn  # f32-stored default
    return m.base, LongRoPE(short_factor=m.tensors["rope_factors_short"].tolist(),
                            long_factor=m.tensors["rope_factors_long"].tolist(),
                            original_max_position_embeddings=L0, factor=lr_factor, attention_factor=attn)


def _read_yarn(m: GGUFFields) -> tuple[float, Scaling | None]:
    L0 = _opt_int(m, "rope.scaling.original_context_length") or m.ctx
    if L0 is None:
        raise ValueError("GGUF YaRN needs rope.scaling.original_context_length (or context_length).")
    ext = _opt(m, "rope.scaling.yarn_ext_factor")
    if ext is not None and ext not in (-1.0, 1.0):
        raise ValueError(f"yarn_ext_factor={ext} blends YaRN's ramp partially; ropekit's YaRN needs ext_factor 1.")
    s = _opt(m, "rope.scaling.factor")
    if s is None:
        raise ValueError(f"GGUF YaRN needs {m.pre}rope.scaling.factor.")
    common: dict[str, Any] = {"factor": s, "original_max_position_embeddings": L0,
                              "beta_fast": _opt(m, "rope.scaling.yarn_beta_fast") or 32.0,
                              "beta_slow": _opt(m, "rope.scaling.yarn_beta_slow") or 1.0}
    log_mul = _opt(m, "rope.scaling.yarn_log_multiplier")
    attn = _opt(m, "rope.scaling.yarn_attn_factor")
    mscale = mscale_all = None
    if log_mul:
        mscale, mscale_all = 1.0, round(log_mul / _LOG_MUL_UNIT, 6)
        YaRN(**common, mscale=mscale, mscale_all_dim=mscale_all)  # mscale_all >= 0 before dividing by g(s, it)
        if attn is not None and math.isclose(attn, yarn_mscale(s) / yarn_mscale(s, mscale_all), rel_tol=1e-6):
            attn = None  # the ratio form already says it
    return m.base, YaRN(**common, mscale=mscale, mscale_all_dim=mscale_all, attention_factor=attn)


def _method(m: GGUFFields) -> str:
    """The ropekit method a GGUF's keys and tensors describe."""
    if m.pre + _NTK_ALPHA in m.kv:
        return "ntk"
    stype = m.kv.get(f"{m.pre}rope.scaling.type")
    if stype is None and m.kv.get(f"{m.pre}rope.scale_linear") is not None:
        stype = "linear"
    if stype in (None, "none"):
        return "llama3" if "rope_freqs" in m.tensors else "default"
    if stype not in ("linear", "yarn", "longrope"):
        raise ValueError(f"unknown GGUF rope.scaling.type {stype!r}; ropekit reads none, linear, yarn, longrope.")
    return str(stype)


def from_gguf_metadata(kv: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None, *,
                       layout: str | None = None) -> RopeConfig:
    """``RopeConfig`` from GGUF key-value pairs and RoPE tensors (what :func:`gguf_metadata` returns, or what
    :func:`to_gguf_metadata` / :func:`to_gguf_tensors` write); ``layout`` as in :func:`from_gguf`.

    >>> import ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=64, base=1e6, max_position_embeddings=131072,
    ...     scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=32768))
    >>> from ropekit.interop.gguf_write import to_gguf_metadata
    >>> kv = {"general.architecture": "qwen2", "qwen2.attention.key_length": 64, **to_gguf_metadata(cfg, "qwen2")}
    >>> from_gguf_metadata(kv) == cfg
    True
    """
    from ropekit.interop.dialects import reader  # here: dialects.py imports this module's readers and writers

    if not isinstance(kv, Mapping):
        raise TypeError(f"kv must be a dict of GGUF metadata, got {type(kv).__name__}.")
    tensors = {} if tensors is None else dict(tensors)
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"GGUF tensor {name!r} must be a torch.Tensor, got {type(t).__name__}.")
        tensors[name] = t.double().reshape(-1)
    arch = kv.get("general.architecture")
    if not arch or not isinstance(arch, str):
        raise ValueError(f"not a model GGUF: general.architecture is {arch!r}, not an architecture name.")
    pre = f"{arch}."
    n_head = kv.get(f"{pre}attention.head_count")
    if isinstance(n_head, list):  # per-layer head counts
        n_head = max((integer(f"{pre}attention.head_count", h, minimum=0) for h in n_head), default=0)
    head_dim = kv.get(f"{pre}attention.key_length")
    if head_dim is None:
        if not n_head or f"{pre}embedding_length" not in kv:
            raise ValueError("cannot infer head_dim (no attention.key_length or embedding_length/head_count).")
        head_dim = integer(f"{pre}embedding_length", kv[f"{pre}embedding_length"]) // integer(
            f"{pre}attention.head_count", n_head)
    head_dim = integer(f"{pre}attention.key_length", head_dim)
    rd = kv.get(f"{pre}rope.dimension_count")
    rd = integer(f"{pre}rope.dimension_count", rd) if rd else head_dim
    ctx = kv.get(f"{pre}context_length")
    ctx = None if ctx is None else integer(f"{pre}context_length", ctx)
    m = GGUFFields(kv=kv, tensors=tensors, pre=pre, rotary_dim=rd,
                   base=number(f"{pre}rope.freq_base", kv.get(f"{pre}rope.freq_base", 10000.0)), ctx=ctx)
    base, scaling = reader(_method(m), "gguf")(m)
    return RopeConfig(head_dim=head_dim, base=base, layout=_arch_layout(arch, layout), rotary_dim=rd,  # type: ignore[arg-type]
                      max_position_embeddings=ctx, scaling=scaling)


def from_gguf(path: str | os.PathLike[str], *, layout: str | None = None) -> RopeConfig:
    """``RopeConfig`` of a GGUF model file, describing the GGUF's own q/k weights (see the module doc).

    ``layout`` overrides the architecture's llama.cpp rope mode (needed for architectures ropekit does not
    list in :data:`GGUF_ARCH_LAYOUT`). A malformed file raises ``ValueError``.
    """
    kv, tensors = gguf_metadata(path)
    try:
        return from_gguf_metadata(kv, tensors, layout=layout)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
