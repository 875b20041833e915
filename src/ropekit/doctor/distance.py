"""How far an engine's RoPE is from the reference: angles, cos/sin and attention factor, in float64.

Positions ``0..context-1`` are subsampled on an even grid that always holds the last position (the
worst one). Length-dependent methods (dynamic NTK, LongRoPE) are compared in two regimes: a short sequence
(at most the trained context) and a full-length one, because engines disagree exactly there. Pairs that do
not rotate count as angle 0, so a dropped partial-rotary factor shows up as an angle error.

>>> import ropekit
>>> ref = ropekit.RopeConfig(head_dim=64, base=1e4, max_position_embeddings=4096)
>>> d = config_distance(ref, "hf", ref.replace(base=5e5), "hf", 4096)
>>> d["max_angle_error"] > 1.0, d["attention_factor_diff"]
(True, 0.0)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ropekit.core.config import RopeConfig
from ropekit.interop.compat import compat_inv_freq

__all__ = ["FP32_TOLERANCE", "config_distance", "fp32_angle_error", "position_grid"]

#: angle error (rad) above which fp32 angle formation is reported (the issue's threshold).
FP32_TOLERANCE = 1e-3
_GRID = 1024  # positions sampled per regime (plus the last ones): ~1 ms per comparison


def position_grid(context: int, n: int = _GRID) -> torch.Tensor:
    """Float64 positions in ``[0, context)``: ``n`` evenly spaced, the last 16 and ``context - 1``."""
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise ValueError(f"context must be a positive int, got {context!r}.")
    even = torch.linspace(0, context - 1, min(n, context), dtype=torch.float64).round()
    tail = torch.arange(max(0, context - 16), context, dtype=torch.float64)
    return torch.unique(torch.cat([even, tail]))


def _padded(cfg: RopeConfig, inv: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(cfg.head_dim // 2, dtype=torch.float64)
    out[: inv.numel()] = inv
    return out


def _regimes(ref: RopeConfig, eng: RopeConfig, context: int) -> list[int]:
    lengths = {context}
    for c in (ref, eng):
        if c.scaling is not None and c.scaling.depends_on_seq_len and c.original_max_position_embeddings:
            lengths.add(min(context, c.original_max_position_embeddings))
    return sorted(lengths)


def config_distance(ref: RopeConfig, ref_compat: str, eng: RopeConfig, eng_compat: str, context: int,
                    *, engine_context: int | None = None) -> dict[str, Any]:
    """Max angle error (rad, wrapped to [-pi, pi]), max |dcos| / |dsin| (attention factor applied) and the
    attention-factor difference of ``eng`` (as ``eng_compat`` computes it) against ``ref``, over positions
    ``0..context-1``. ``engine_context``: the engine's configured context (vLLM max_model_len, llama.cpp
    n_ctx), which decides its LongRoPE factors."""
    if ref.head_dim != eng.head_dim:
        return {"comparable": False, "reason": f"head_dim {eng.head_dim} != reference {ref.head_dim}"}
    worst = {"max_angle_error": 0.0, "max_abs_dcos": 0.0, "max_abs_dsin": 0.0}
    a_ref, a_eng = ref.attention_factor, eng.attention_factor
    for length in _regimes(ref, eng, context):
        inv_r = _padded(ref, compat_inv_freq(ref, compat=ref_compat, seq_len=length, context=length))
        inv_e = _padded(eng, compat_inv_freq(eng, compat=eng_compat, seq_len=length,
                                             context=engine_context or context))
        pos = position_grid(length)[:, None]
        ang_r, ang_e = pos * inv_r, pos * inv_e
        diff = torch.remainder(ang_e - ang_r + math.pi, 2 * math.pi) - math.pi
        worst["max_angle_error"] = max(worst["max_angle_error"], float(diff.abs().max()))
        worst["max_abs_dcos"] = max(worst["max_abs_dcos"], float((a_e_cos := a_eng * torch.cos(ang_e)).sub(
            a_ref * torch.cos(ang_r)).abs().max()))
        worst["max_abs_dsin"] = max(worst["max_abs_dsin"], float((a_eng * torch.sin(ang_e)).sub(
            a_ref * torch.sin(ang_r)).abs().max()))
        del a_e_cos
    return {"comparable": True, **worst, "attention_factor_diff": abs(a_eng - a_ref),
            "regimes": _regimes(ref, eng, context)}


def _hf_default_inv32(cfg: RopeConfig) -> torch.Tensor:
    # exactly transformers' default formula in float32 (the rounding HF really has)
    d = cfg.rotary_dim
    return 1.0 / (cfg.base ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))  # type: ignore[operator]


def fp32_angle_error(cfg: RopeConfig, compat: str, context: int, *, engine_context: int | None = None) -> float:
    """Max |angle formed in float32 - exact angle| (rad) over positions ``0..context-1`` for an engine that
    forms angles the way ``compat`` does: HF / vLLM multiply float32 positions by float32 ``inv_freq``;
    llama.cpp raises ``theta_scale`` to successive powers in float32 (``theta *= theta_scale`` per pair).

    >>> import ropekit
    >>> fp32_angle_error(ropekit.RopeConfig(head_dim=64, base=1e5), "hf", 262144) > FP32_TOLERANCE
    True
    """
    seq = context if cfg.scaling is not None and cfg.scaling.depends_on_seq_len else None
    inv64 = compat_inv_freq(cfg, compat=compat, seq_len=seq, context=engine_context or context)
    pos = position_grid(context)
    exact = pos[:, None] * inv64
    if compat == "llama.cpp":
        d = cfg.rotary_dim
        scale32 = torch.tensor(cfg.base, dtype=torch.float32) ** torch.tensor(-2.0 / d, dtype=torch.float32)  # type: ignore[operator]
        theta = pos.to(torch.float32)
        cols = []
        for _ in range(d // 2):  # type: ignore[operator]
            cols.append(theta)
            theta = theta * scale32
        base_ang = torch.stack(cols, dim=1)
        default = torch.tensor(cfg.base, dtype=torch.float64) ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # type: ignore[operator]
        ratio = (inv64 / default).to(torch.float32)  # freq_scale / YaRN ramp / rope_freqs, applied in float32
        approx = (base_ang * ratio).double()
    else:
        inv32 = _hf_default_inv32(cfg) if cfg.scaling is None else inv64.to(torch.float32)
        approx = (pos.to(torch.float32)[:, None] * inv32).double()
    return float((approx - exact).abs().max())
