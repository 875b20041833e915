"""Where HF, vLLM and llama.cpp compute different frequencies from the *same* config: ``compat=``.

ropekit's core follows transformers (``compat="hf"``). The other modes reproduce what the named engine
computes, so a parity test or a port can target it deliberately:

============  ===============================================================================================
method        difference
============  ===============================================================================================
dynamic       vLLM evaluates HF's formula once at length L0 * s (base * (s^2 - s + 1)^(d/(d-2)), whatever the
              sequence); llama.cpp has no dynamic NTK (raises).
longrope      HF switches short -> long on the current length (max position + 1 > L0); vLLM and llama.cpp pick
              once from the configured context (``context=``, default ``cfg.max_position_embeddings``).
yarn          llama.cpp always floors/ceils the correction range (no ``truncate=False``) and clamps the ramp
              denominator to >= 0.001 where HF divides by a negative width when high < low.
============  ===============================================================================================

The attention factor agrees across the three once each dialect's own convention is decoded (see
docs/dialects.md); :func:`softmax_scale_multiplier` gives DeepSeek's extra softmax mscale^2, which none
of them puts in the rotary embedding.
"""

from __future__ import annotations

import math

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.frequencies import default_inv_freq, yarn_mscale
from ropekit.core.scaling import NTK, DynamicNTK, LongRoPE, YaRN
from ropekit.core.tables import cos_sin_table
from ropekit.core.validation import check_choice

__all__ = ["COMPAT_MODES", "attention_factor", "compat_cos_sin_table", "compat_inv_freq", "softmax_scale_multiplier"]

COMPAT_MODES = ("hf", "vllm", "llama.cpp")


def _llama_cpp_yarn(cfg: RopeConfig, sc: YaRN) -> torch.Tensor:
    d, base, L0 = cfg.rotary_dim, cfg.base, sc.original_max_position_embeddings

    def corr_dim(rot: float) -> float:
        return d * math.log(L0 / (rot * 2 * math.pi)) / (2 * math.log(base))

    low = max(0.0, math.floor(corr_dim(sc.beta_fast)))
    high = min(d - 1.0, math.ceil(corr_dim(sc.beta_slow)))
    y = (torch.arange(d // 2, dtype=torch.float64) - low) / max(0.001, high - low)
    mix = 1 - y.clamp(0, 1)  # ext_factor = 1
    theta = default_inv_freq(d, base)
    return theta / sc.factor * (1 - mix) + theta * mix


def compat_inv_freq(
    cfg: RopeConfig, *, compat: str = "hf", seq_len: int | None = None, context: int | None = None
) -> torch.Tensor:
    """Float64 ``(rotary_dim // 2,)`` frequencies as ``compat`` computes them. ``seq_len``: the current
    length (HF's dynamic NTK / LongRoPE); ``context``: the engine's configured context (vLLM's
    max_model_len, llama.cpp's n_ctx), defaulting to ``cfg.max_position_embeddings``.

    >>> import ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=8, max_position_embeddings=64,
    ...     scaling=ropekit.DynamicNTK(factor=2.0, original_max_position_embeddings=64))
    >>> bool((compat_inv_freq(cfg, compat="vllm")[1:] < compat_inv_freq(cfg)[1:]).all())  # vLLM: frozen at 2 L0
    True
    """
    check_choice("compat", compat, COMPAT_MODES)
    sc = cfg.scaling
    if compat == "hf":
        return cfg.inv_freq(seq_len)
    ctx = context if context is not None else cfg.max_position_embeddings
    if isinstance(sc, DynamicNTK):
        if compat == "llama.cpp":
            raise ValueError("llama.cpp has no dynamic NTK; compat='llama.cpp' cannot evaluate it.")
        s = sc.factor
        return cfg.replace(scaling=NTK(alpha=s * s - s + 1)).inv_freq()
    if isinstance(sc, LongRoPE):
        if ctx is None:
            raise ValueError(f"compat={compat!r} picks LongRoPE factors from the configured context; pass context=.")
        return cfg.inv_freq(seq_len=ctx)
    if isinstance(sc, YaRN) and compat == "llama.cpp":
        return _llama_cpp_yarn(cfg, sc)
    return cfg.inv_freq(seq_len)


def attention_factor(cfg: RopeConfig, *, compat: str = "hf") -> float:
    """The factor multiplying cos and sin, identical across engines once their configs are decoded
    (llama.cpp's implicit ``1 + 0.1 ln s`` is part of its op; ropekit's dialects account for it)."""
    check_choice("compat", compat, COMPAT_MODES)
    return cfg.attention_factor


def softmax_scale_multiplier(cfg: RopeConfig) -> float:
    """DeepSeek's extra softmax scale ``g(s, mscale_all_dim) ** 2`` (1.0 unless YaRN sets ``mscale_all_dim``).

    HF's DeepSeek-V2/V3 attention multiplies ``1/sqrt(d)`` by it outside the rotary embedding; llama.cpp
    folds it into ``kq_scale`` from ``yarn_log_multiplier``. A port that only moves the RoPE config loses it.

    >>> import ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=64, scaling=ropekit.YaRN(factor=40.0,
    ...     original_max_position_embeddings=4096, mscale=1.0, mscale_all_dim=1.0))
    >>> round(softmax_scale_multiplier(cfg), 4), cfg.attention_factor
    (1.8739, 1.0)
    """
    sc = cfg.scaling
    if isinstance(sc, YaRN) and sc.mscale_all_dim:
        return yarn_mscale(sc.factor, sc.mscale_all_dim) ** 2
    return 1.0


def compat_cos_sin_table(
    cfg: RopeConfig, length: int, *, compat: str = "hf", seq_len: int | None = None, context: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 ``(length, rotary_dim // 2)`` cos/sin as ``compat`` computes them (float64 angles)."""
    inv = compat_inv_freq(cfg, compat=compat, seq_len=seq_len, context=context)
    return cos_sin_table(inv, length, attention_factor(cfg, compat=compat), device)
