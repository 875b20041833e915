"""GGUF dialect (llama.cpp model files): ``{arch}.rope.*`` keys and the ``rope_freqs`` /
``rope_factors_long`` / ``rope_factors_short`` tensors.

Layout: llama.cpp picks the pair layout from the architecture, not from a key. Its converter stores the q/k
weights of NORM-mode architectures (``llama``, ``mistral``, ...) permuted to GPT-J pairs, so
:func:`from_gguf` reports ``layout="interleaved"`` for them: that is the truth *for the GGUF's weights*. The
HF checkpoint of the same model pairs ``i <-> i + d/2`` ("half"); ``permute_qk(w, n_heads, head_dim,
src="interleaved", dst="half")`` maps the GGUF's q/k weights back to HF's. NEOX-mode architectures
(``qwen2``, ``phi3``, ``gemma``, ...) keep HF's layout.

The ``gguf`` package is imported inside the functions that need it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.frequencies import default_inv_freq, yarn_mscale
from ropekit.core.scaling import NTK, DynamicNTK, Linear, Llama3, LongRoPE, Proportional, Scaling, YaRN
from ropekit.core.validation import check_choice, suggest

__all__ = ["GGUF_ARCH_LAYOUT", "from_gguf", "gguf_metadata", "to_gguf_metadata", "to_gguf_tensors", "write_gguf_rope"]

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

    Parsing a GGUF with ``gguf.GGUFReader`` walks the whole vocabulary (seconds), so the small result is
    memoised per (path, size, mtime).
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


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    import gguf

    reader = gguf.GGUFReader(path)
    kv: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.") or not field.types:
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY and len(field.data) > 64:
            continue  # long arrays (vocabularies) are never RoPE metadata
        kv[key] = field.contents()
    names = ("rope_freqs", "rope_factors_long", "rope_factors_short")
    tensors = {}
    for t in reader.tensors:
        base = t.name.removesuffix(".weight")
        if base in names:
            tensors[base] = torch.tensor(t.data.astype("float64").reshape(-1))
    return kv, tensors


def _fit_llama3(divisors: torch.Tensor, inv: torch.Tensor, L0_hint: int | None) -> Llama3 | None:
    """Recover Llama3 parameters from llama.cpp's per-pair divisors; ``None`` when they are not llama3's."""
    s = float(divisors.max())
    if s <= 1:
        return None
    medium = (divisors > 1 + 1e-6) & (divisors < s * (1 - 1e-6))
    if int(medium.sum()) < 2:
        return None
    # medium band: 1/div = (1 - sm)/s + sm with sm = A/lambda - B, linear in 1/lambda = inv / (2 pi)
    sm = (1 / divisors[medium] - 1 / s) / (1 - 1 / s)
    x = inv[medium] / (2 * math.pi)
    A = float(((x - x.mean()) * (sm - sm.mean())).sum() / ((x - x.mean()) ** 2).sum())
    B = float(A * x.mean() - sm.mean())
    if A <= 0 or B <= 0:
        return None
    if L0_hint is not None:
        L0 = L0_hint
        span = L0 / A
        low = B * span
    else:  # Llama 3.x all use low_freq_factor = 1; the scale of (L0, low, high) is otherwise not identifiable
        low = 1.0
        span = low / B
        L0 = round(A * span)
    try:
        fit = Llama3(factor=round(s, 6), original_max_position_embeddings=int(L0), low_freq_factor=round(low, 6),
                     high_freq_factor=round(low + span, 6))
    except ValueError:
        return None
    return fit


def _scaling_from_kv(kv: dict[str, Any], tensors: dict[str, torch.Tensor], pre: str, rd: int, base: float,
                     ctx: int | None) -> Scaling | None:
    stype = kv.get(f"{pre}rope.scaling.type")
    factor = kv.get(f"{pre}rope.scaling.factor")
    if stype is None and kv.get(f"{pre}rope.scale_linear") is not None:  # pre-2023 key
        stype, factor = "linear", kv[f"{pre}rope.scale_linear"]
    L0 = kv.get(f"{pre}rope.scaling.original_context_length") or ctx
    if "rope_freqs" in tensors and stype in (None, "none"):
        div = tensors["rope_freqs"]
        if div.numel() != rd // 2:
            raise ValueError(f"rope_freqs has {div.numel()} entries, expected rotary_dim // 2 = {rd // 2}.")
        fit = _fit_llama3(div, default_inv_freq(rd, base), kv.get(f"{pre}rope.scaling.original_context_length"))
        if fit is not None:
            got = default_inv_freq(rd, base) / div
            want = RopeConfig(head_dim=rd, base=base, scaling=fit).inv_freq()
            if torch.allclose(got, want, rtol=1e-5, atol=0):
                return fit
        # arbitrary per-pair divisors: LongRoPE with identical short/long factors and no attention factor
        return LongRoPE(short_factor=div.tolist(), long_factor=div.tolist(), original_max_position_embeddings=L0 or 1,
                        attention_factor=1.0)
    if stype in (None, "none"):
        return None
    if stype == "linear":
        return None if float(factor) == 1.0 else Linear(factor=float(factor))
    if stype == "longrope":
        if "rope_factors_long" not in tensors or "rope_factors_short" not in tensors:
            raise ValueError("GGUF rope.scaling.type 'longrope' needs the rope_factors_long/short tensors.")
        attn = kv.get(f"{pre}rope.scaling.attn_factor")
        lr_factor = None if ctx is None else ctx / int(L0)
        if attn is not None and lr_factor is not None:
            default = 1.0 if lr_factor <= 1 else math.sqrt(1 + math.log(lr_factor) / math.log(int(L0)))
            attn = None if math.isclose(float(attn), default, rel_tol=1e-6) else attn  # f32-stored default
        return LongRoPE(short_factor=tensors["rope_factors_short"].tolist(),
                        long_factor=tensors["rope_factors_long"].tolist(),
                        original_max_position_embeddings=int(L0),
                        factor=lr_factor,
                        attention_factor=None if attn is None else float(attn))
    if stype != "yarn":
        raise ValueError(f"unknown GGUF rope.scaling.type {stype!r}; ropekit reads none, linear, yarn, longrope.")
    if L0 is None:
        raise ValueError("GGUF YaRN needs rope.scaling.original_context_length (or context_length).")
    ext = kv.get(f"{pre}rope.scaling.yarn_ext_factor")
    if ext is not None and float(ext) not in (-1.0, 1.0):
        raise ValueError(f"yarn_ext_factor={ext} blends YaRN's ramp partially; ropekit's YaRN needs ext_factor 1.")
    log_mul = kv.get(f"{pre}rope.scaling.yarn_log_multiplier")
    attn = kv.get(f"{pre}rope.scaling.yarn_attn_factor")
    mscale = mscale_all = None
    s = float(factor)
    if log_mul:
        mscale, mscale_all = 1.0, round(float(log_mul) / _LOG_MUL_UNIT, 6)
        if attn is not None and math.isclose(float(attn), yarn_mscale(s) / yarn_mscale(s, mscale_all), rel_tol=1e-6):
            attn = None  # the ratio form already says it
    return YaRN(factor=s, original_max_position_embeddings=int(L0),
                beta_fast=float(kv.get(f"{pre}rope.scaling.yarn_beta_fast") or 32.0),
                beta_slow=float(kv.get(f"{pre}rope.scaling.yarn_beta_slow") or 1.0),
                mscale=mscale, mscale_all_dim=mscale_all, attention_factor=None if attn is None else float(attn))


def from_gguf(path: str | os.PathLike[str], *, layout: str | None = None) -> RopeConfig:
    """``RopeConfig`` of a GGUF model file, describing the GGUF's own q/k weights (see the module doc).

    ``layout`` overrides the architecture's llama.cpp rope mode (needed for architectures ropekit does not
    list in :data:`GGUF_ARCH_LAYOUT`).
    """
    kv, tensors = gguf_metadata(path)
    arch = kv.get("general.architecture")
    if not arch:
        raise ValueError(f"{path}: not a model GGUF (no general.architecture key).")
    pre = f"{arch}."
    n_head = kv.get(f"{pre}attention.head_count")
    if isinstance(n_head, list):  # per-layer head counts
        n_head = max(n_head)
    head_dim = kv.get(f"{pre}attention.key_length")
    if head_dim is None:
        if not n_head or f"{pre}embedding_length" not in kv:
            raise ValueError(f"{path}: cannot infer head_dim (no attention.key_length or embedding_length/head_count).")
        head_dim = int(kv[f"{pre}embedding_length"]) // int(n_head)
    head_dim = int(head_dim)
    rd = int(kv.get(f"{pre}rope.dimension_count") or head_dim)
    base = float(kv.get(f"{pre}rope.freq_base", 10000.0))
    ctx = kv.get(f"{pre}context_length")
    ctx = None if ctx is None else int(ctx)
    scaling = _scaling_from_kv(kv, tensors, pre, rd, base, ctx)
    return RopeConfig(head_dim=head_dim, base=base, layout=_arch_layout(arch, layout), rotary_dim=rd,
                      max_position_embeddings=ctx, scaling=scaling)


def _check_expressible(cfg: RopeConfig, arch: str) -> None:
    sc = cfg.scaling
    if isinstance(sc, (NTK, DynamicNTK, Proportional)):
        raise ValueError(
            f"GGUF/llama.cpp cannot express {type(sc).__name__} scaling (no key for it); for static NTK fold the "
            "base (cfg.replace(base=..., scaling=None))."
        )
    if isinstance(sc, YaRN) and not sc.truncate:
        raise ValueError("llama.cpp always floors/ceils the YaRN correction range; truncate=False cannot be expressed.")
    want = GGUF_ARCH_LAYOUT.get(arch)
    if want is not None and want != cfg.layout:
        raise ValueError(
            f"llama.cpp runs arch {arch!r} with {want!r} pairs, but cfg.layout={cfg.layout!r}. Permute the q/k "
            f"weights with permute_qk(..., src={cfg.layout!r}, dst={want!r}) and pass cfg.replace(layout={want!r})."
        )


def to_gguf_metadata(cfg: RopeConfig, arch: str) -> dict[str, Any]:
    """GGUF key -> value for ``cfg`` (``{arch}.rope.*``, plus ``{arch}.context_length`` when known).

    Tensors (llama3 divisors, LongRoPE factors) come from :func:`to_gguf_tensors`; :func:`write_gguf_rope`
    adds both to a ``gguf.GGUFWriter``. Raises when llama.cpp cannot express ``cfg``.

    >>> import ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=64, base=1e6, layout="half", max_position_embeddings=131072,
    ...     scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=32768))
    >>> to_gguf_metadata(cfg, "qwen2")["qwen2.rope.scaling.type"]
    'yarn'
    """
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"arch must be a non-empty GGUF architecture name, got {arch!r}.")
    _check_expressible(cfg, arch)
    p = f"{arch}.rope."
    out: dict[str, Any] = {f"{p}freq_base": cfg.base, f"{p}dimension_count": cfg.rotary_dim}
    if cfg.max_position_embeddings is not None:
        out[f"{arch}.context_length"] = cfg.max_position_embeddings
    sc = cfg.scaling
    if isinstance(sc, Linear):
        out[f"{p}scaling.type"] = "linear"
        out[f"{p}scaling.factor"] = sc.factor
    elif isinstance(sc, Llama3):
        out[f"{p}scaling.original_context_length"] = sc.original_max_position_embeddings
    elif isinstance(sc, LongRoPE):
        out[f"{p}scaling.type"] = "longrope"
        out[f"{p}scaling.original_context_length"] = sc.original_max_position_embeddings
        out[f"{p}scaling.attn_factor"] = cfg.attention_factor
    elif isinstance(sc, YaRN):
        out[f"{p}scaling.type"] = "yarn"
        out[f"{p}scaling.factor"] = sc.factor
        out[f"{p}scaling.original_context_length"] = sc.original_max_position_embeddings
        out[f"{p}scaling.yarn_beta_fast"] = sc.beta_fast
        out[f"{p}scaling.yarn_beta_slow"] = sc.beta_slow
        if sc.mscale and sc.mscale_all_dim:
            if sc.mscale != 1.0:
                raise ValueError(f"GGUF's yarn_log_multiplier assumes mscale == 1 (DeepSeek); got mscale={sc.mscale}.")
            out[f"{p}scaling.yarn_log_multiplier"] = _LOG_MUL_UNIT * sc.mscale_all_dim
        if not math.isclose(cfg.attention_factor, yarn_mscale(sc.factor), rel_tol=1e-12):
            # the converter's convention: the full attention factor (llama.cpp cancels its implicit mscale)
            out[f"{p}scaling.yarn_attn_factor"] = cfg.attention_factor
    return out


def to_gguf_tensors(cfg: RopeConfig) -> dict[str, torch.Tensor]:
    """Float32 RoPE tensors llama.cpp reads: ``rope_freqs`` (llama3 per-pair divisors) or
    ``rope_factors_long`` / ``rope_factors_short`` (LongRoPE), each ``(rotary_dim // 2,)``.

    >>> import ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=128, base=5e5,
    ...     scaling=ropekit.Llama3(factor=8.0, original_max_position_embeddings=8192))
    >>> div = to_gguf_tensors(cfg)["rope_freqs"]
    >>> div[0].item(), div[-1].item()        # high frequencies kept, low ones divided by the factor
    (1.0, 8.0)
    """
    sc = cfg.scaling
    if isinstance(sc, Llama3):
        div = default_inv_freq(cfg.rotary_dim, cfg.base) / cfg.inv_freq()  # type: ignore[arg-type]
        return {"rope_freqs": div.to(torch.float32)}
    if isinstance(sc, LongRoPE):
        return {"rope_factors_long": torch.tensor(sc.long_factor, dtype=torch.float32),
                "rope_factors_short": torch.tensor(sc.short_factor, dtype=torch.float32)}
    return {}


def write_gguf_rope(writer: Any, cfg: RopeConfig) -> None:
    """Add ``cfg``'s RoPE keys and tensors to a ``gguf.GGUFWriter`` (its ``arch`` names the keys)."""
    for key, value in to_gguf_metadata(cfg, writer.arch).items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, int) and not isinstance(value, bool):
            writer.add_uint32(key, value)
        else:
            writer.add_float32(key, float(value))
    for name, t in to_gguf_tensors(cfg).items():
        writer.add_tensor(f"{name}.weight", t.numpy())  # llama.cpp's tensor names carry ".weight"
