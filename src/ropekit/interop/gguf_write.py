"""GGUF dialect, the writing side: ``{arch}.rope.*`` keys and RoPE tensors for a :class:`~ropekit.RopeConfig`.

One writer per method (registered in :mod:`ropekit.interop.dialects`); the public functions refuse what
llama.cpp cannot express. Reading, the architecture -> pair-layout table and the ropekit-private keys live in
:mod:`ropekit.interop.gguf`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.frequencies import default_inv_freq, yarn_mscale
from ropekit.core.scaling import NTK, Linear, Llama3, LongRoPE, YaRN
from ropekit.interop.fields import folded_ntk_base, refuse, scaling_of
from ropekit.interop.gguf import _LOG_MUL_UNIT, _NTK_ALPHA, _NTK_BASE, GGUF_ARCH_LAYOUT

__all__ = ["GGUFWritten", "to_gguf_metadata", "to_gguf_tensors", "write_gguf_rope"]


# -- writers, one per method: cfg -> (keys relative to "{arch}.", tensors) --------------------------------
GGUFWritten = tuple[dict[str, Any], dict[str, torch.Tensor]]


def _write_default(cfg: RopeConfig) -> GGUFWritten:
    return {}, {}


def _write_linear(cfg: RopeConfig) -> GGUFWritten:
    return {"rope.scaling.type": "linear", "rope.scaling.factor": scaling_of(cfg, Linear).factor}, {}


def _write_ntk(cfg: RopeConfig) -> GGUFWritten:
    # llama.cpp has no NTK key but reads freq_base: the folded base is exact; the ropekit keys say what it was
    return {"rope.freq_base": folded_ntk_base(cfg, "gguf"), _NTK_ALPHA: scaling_of(cfg, NTK).alpha,
            _NTK_BASE: cfg.base}, {}


def _write_llama3(cfg: RopeConfig) -> GGUFWritten:
    sc = scaling_of(cfg, Llama3)
    div = default_inv_freq(cfg.rotary_dim, cfg.base) / cfg.inv_freq()  # type: ignore[arg-type]
    return {"rope.scaling.original_context_length": sc.original_max_position_embeddings}, {
        "rope_freqs": div.to(torch.float32)}


def _write_longrope(cfg: RopeConfig) -> GGUFWritten:
    sc = scaling_of(cfg, LongRoPE)
    keys = {"rope.scaling.type": "longrope", "rope.scaling.attn_factor": cfg.attention_factor,
            "rope.scaling.original_context_length": sc.original_max_position_embeddings}
    return (keys,
            {"rope_factors_long": torch.tensor(sc.long_factor, dtype=torch.float32),
             "rope_factors_short": torch.tensor(sc.short_factor, dtype=torch.float32)})


def _write_yarn(cfg: RopeConfig) -> GGUFWritten:
    sc = scaling_of(cfg, YaRN)
    if not sc.truncate:
        raise refuse("yarn", "gguf", "llama.cpp always floors/ceils the YaRN correction range; truncate=False "
                     "cannot be expressed.")
    out: dict[str, Any] = {"rope.scaling.type": "yarn", "rope.scaling.factor": sc.factor,
                           "rope.scaling.original_context_length": sc.original_max_position_embeddings,
                           "rope.scaling.yarn_beta_fast": sc.beta_fast, "rope.scaling.yarn_beta_slow": sc.beta_slow}
    if sc.mscale and sc.mscale_all_dim:
        if sc.mscale != 1.0:
            raise refuse("yarn", "gguf", f"GGUF's yarn_log_multiplier assumes mscale == 1 (DeepSeek); got "
                         f"mscale={sc.mscale}.")
        out["rope.scaling.yarn_log_multiplier"] = _LOG_MUL_UNIT * sc.mscale_all_dim
    if not math.isclose(cfg.attention_factor, yarn_mscale(sc.factor), rel_tol=1e-12):
        # the converter's convention: the full attention factor (llama.cpp cancels its implicit mscale)
        out["rope.scaling.yarn_attn_factor"] = cfg.attention_factor
    return out, {}


def _check_layout(cfg: RopeConfig, arch: str) -> None:
    want = GGUF_ARCH_LAYOUT.get(arch)
    if want is not None and want != cfg.layout:
        raise ValueError(
            f"llama.cpp runs arch {arch!r} with {want!r} pairs, but cfg.layout={cfg.layout!r}. Permute the q/k "
            f"weights with permute_qk(..., src={cfg.layout!r}, dst={want!r}) and pass cfg.replace(layout={want!r})."
        )


def to_gguf_metadata(cfg: RopeConfig, arch: str) -> dict[str, Any]:
    """GGUF key -> value for ``cfg`` (``{arch}.rope.*``, plus ``{arch}.context_length`` when known).

    Tensors (llama3 divisors, LongRoPE factors) come from :func:`to_gguf_tensors`; :func:`write_gguf_rope`
    adds both to a ``gguf.GGUFWriter``. Raises when llama.cpp cannot express ``cfg``. Static NTK is written as
    its folded ``rope.freq_base`` plus two ``{arch}.rope.ropekit.*`` keys that llama.cpp ignores and
    :func:`from_gguf` reads back.

    >>> import ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=64, base=1e6, layout="half", max_position_embeddings=131072,
    ...     scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=32768))
    >>> to_gguf_metadata(cfg, "qwen2")["qwen2.rope.scaling.type"]
    'yarn'
    """
    from ropekit.interop.dialects import writer  # here: dialects.py imports this module's readers and writers

    if not isinstance(arch, str) or not arch:
        raise ValueError(f"arch must be a non-empty GGUF architecture name, got {arch!r}.")
    if not isinstance(cfg, RopeConfig):
        raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
    keys, _ = writer(cfg.method, "gguf")(cfg)
    _check_layout(cfg, arch)
    out: dict[str, Any] = {f"{arch}.rope.freq_base": cfg.base, f"{arch}.rope.dimension_count": cfg.rotary_dim}
    if cfg.max_position_embeddings is not None:
        out[f"{arch}.context_length"] = cfg.max_position_embeddings
    out.update({f"{arch}.{k}": v for k, v in keys.items()})
    return out


def to_gguf_tensors(cfg: RopeConfig) -> dict[str, torch.Tensor]:
    """Float32 RoPE tensors llama.cpp reads: ``rope_freqs`` (llama3 per-pair divisors) or
    ``rope_factors_long`` / ``rope_factors_short`` (LongRoPE), each ``(rotary_dim // 2,)``. Raises, like
    :func:`to_gguf_metadata`, for a config GGUF cannot express.

    >>> import ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=128, base=5e5,
    ...     scaling=ropekit.Llama3(factor=8.0, original_max_position_embeddings=8192))
    >>> div = to_gguf_tensors(cfg)["rope_freqs"]
    >>> div[0].item(), div[-1].item()        # high frequencies kept, low ones divided by the factor
    (1.0, 8.0)
    """
    from ropekit.interop.dialects import writer  # here: dialects.py imports this module's readers and writers

    return writer(cfg.method, "gguf")(cfg)[1]


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
