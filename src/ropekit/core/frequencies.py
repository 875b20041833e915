"""The frequency registry: method name -> pure function ``(params, rotary_dim, base, seq_len)``.

Every function returns ``(inv_freq, attention_factor)`` with ``inv_freq`` float64 of shape
``(rotary_dim // 2,)``. The formulas follow transformers' ``ROPE_INIT_FUNCTIONS`` (tested against
it directly), computed in float64 instead of float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch

from ropekit.core.scaling import NTK, DynamicNTK, Linear, Llama3, LongRoPE, Proportional, Scaling, YaRN
from ropekit.core.validation import check_choice, check_positive, check_rotary_dim

__all__ = [
    "ROPE_FREQUENCIES",
    "FrequencyFn",
    "compute_frequencies",
    "default_inv_freq",
    "kept_pairs",
    "longrope_attention_factor",
    "longrope_default_attention",
    "yarn_mscale",
]

S = TypeVar("S", bound=Scaling)
FrequencyFn = Callable[[Scaling | None, int, float, "int | None"], tuple[torch.Tensor, float]]


def _expect(params: Scaling | None, cls: type[S]) -> S:
    if not isinstance(params, cls):
        raise TypeError(f"method {cls.method!r} needs {cls.__name__} params, got {type(params).__name__}.")
    return params


def default_inv_freq(rotary_dim: int, base: float) -> torch.Tensor:
    """theta_i = base ** (-2i / d), i = 0 .. d/2 - 1, in float64."""
    return base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)


def _default(params: Scaling | None, rotary_dim: int, base: float, seq_len: int | None) -> tuple[torch.Tensor, float]:
    return default_inv_freq(rotary_dim, base), 1.0


def _linear(params: Scaling | None, rotary_dim: int, base: float, seq_len: int | None) -> tuple[torch.Tensor, float]:
    params = _expect(params, Linear)
    return default_inv_freq(rotary_dim, base) / params.factor, 1.0


def _ntk(params: Scaling | None, rotary_dim: int, base: float, seq_len: int | None) -> tuple[torch.Tensor, float]:
    params = _expect(params, NTK)
    return default_inv_freq(rotary_dim, base * params.alpha ** (rotary_dim / (rotary_dim - 2))), 1.0


def _dynamic(params: Scaling | None, rotary_dim: int, base: float, seq_len: int | None) -> tuple[torch.Tensor, float]:
    params = _expect(params, DynamicNTK)
    L0 = params.original_max_position_embeddings
    length = L0 if seq_len is None else max(int(seq_len), L0)
    s = params.factor
    new_base = base * (s * length / L0 - (s - 1)) ** (rotary_dim / (rotary_dim - 2))
    return default_inv_freq(rotary_dim, new_base), 1.0


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature g(s, m) = 1 + 0.1 m ln s (1 for s <= 1)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(params: Scaling | None, rotary_dim: int, base: float, seq_len: int | None) -> tuple[torch.Tensor, float]:
    params = _expect(params, YaRN)
    s, d, L0 = params.factor, rotary_dim, params.original_max_position_embeddings
    if params.attention_factor is not None:
        attn = float(params.attention_factor)
    elif params.mscale and params.mscale_all_dim:
        attn = yarn_mscale(s, params.mscale) / yarn_mscale(s, params.mscale_all_dim)
    else:
        attn = yarn_mscale(s)

    def correction_dim(rotations: float) -> float:
        # the pair index whose wavelength completes `rotations` turns within L0
        return d * math.log(L0 / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(params.beta_fast), correction_dim(params.beta_slow)
    if params.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001  # as HF: avoid a zero-width ramp
    ramp = ((torch.arange(d // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp  # 1 keeps the original frequency, 0 interpolates it by s
    theta = default_inv_freq(d, base)
    return theta / s * (1 - extrapolation) + theta * extrapolation, attn


def longrope_default_attention(factor: float, original_max_position_embeddings: int) -> float:
    """LongRoPE's attention factor when none is given: ``sqrt(1 + ln(s) / ln(L0))``, 1 for ``s <= 1``.

    The one copy of the formula: readers of GGUF/vLLM configs compare a stored factor against it.

    >>> round(longrope_default_attention(32.0, 4096), 6)
    1.190238
    """
    if factor <= 1:
        return 1.0
    if original_max_position_embeddings <= 1:
        raise ValueError(
            "original_max_position_embeddings must be > 1 for a LongRoPE factor > 1, "
            f"got {original_max_position_embeddings}."
        )
    return math.sqrt(1 + math.log(factor) / math.log(original_max_position_embeddings))


def longrope_attention_factor(params: LongRoPE) -> float:
    """``params.attention_factor``, or :func:`longrope_default_attention` when it is unset."""
    if params.attention_factor is not None:
        return float(params.attention_factor)
    s = params.factor if params.factor is not None else 1.0
    return longrope_default_attention(s, params.original_max_position_embeddings)


def kept_pairs(fraction: float, pairs: int) -> int:
    """How many of ``pairs`` frequencies "keep the highest ``fraction``" keeps: ``floor(fraction * pairs)``.

    The one rounding rule (transformers' for ``proportional``, ``int(p * head_dim // 2)``); callers that need
    at least one pair say so themselves (``max(1, ...)``).

    >>> kept_pairs(0.25, 32), kept_pairs(0.4, 4), kept_pairs(1.0, 4)
    (8, 1, 4)
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}.")
    return math.floor(fraction * pairs)


def _longrope(params: Scaling | None, rotary_dim: int, base: float, seq_len: int | None) -> tuple[torch.Tensor, float]:
    params = _expect(params, LongRoPE)
    if len(params.short_factor) != rotary_dim // 2:
        raise ValueError(
            f"LongRoPE short_factor/long_factor must have rotary_dim // 2 = {rotary_dim // 2} entries, "
            f"got {len(params.short_factor)}."
        )
    long = seq_len is not None and seq_len > params.original_max_position_embeddings
    ext = torch.tensor(params.long_factor if long else params.short_factor, dtype=torch.float64)
    return default_inv_freq(rotary_dim, base) / ext, longrope_attention_factor(params)


def _llama3(params: Scaling | None, rotary_dim: int, base: float, seq_len: int | None) -> tuple[torch.Tensor, float]:
    params = _expect(params, Llama3)
    theta = default_inv_freq(rotary_dim, base)
    L0, s = params.original_max_position_embeddings, params.factor
    lo, hi = params.low_freq_factor, params.high_freq_factor
    wavelen = 2 * math.pi / theta
    smooth = (L0 / wavelen - lo) / (hi - lo)
    out = torch.where(wavelen > L0 / lo, theta / s, theta)
    medium = (wavelen >= L0 / hi) & (wavelen <= L0 / lo)
    return torch.where(medium, (1 - smooth) * theta / s + smooth * theta, out), 1.0


def _proportional(
    params: Scaling | None, rotary_dim: int, base: float, seq_len: int | None
) -> tuple[torch.Tensor, float]:
    params = _expect(params, Proportional)
    head_dim = rotary_dim  # proportional rotates the full head; unused pairs get frequency 0
    n_rot = kept_pairs(params.partial_rotary_factor, head_dim // 2)
    inv = torch.zeros(head_dim // 2, dtype=torch.float64)
    inv[:n_rot] = base ** (-torch.arange(0, 2 * n_rot, 2, dtype=torch.float64) / head_dim)
    return inv / params.factor, 1.0


#: method name -> frequency function, like transformers' ROPE_INIT_FUNCTIONS.
ROPE_FREQUENCIES: dict[str, FrequencyFn] = {
    "default": _default,
    "linear": _linear,
    "ntk": _ntk,
    "dynamic": _dynamic,
    "yarn": _yarn,
    "longrope": _longrope,
    "llama3": _llama3,
    "proportional": _proportional,
}


def compute_frequencies(
    method: str, params: Scaling | None, *, rotary_dim: int, base: float, seq_len: int | None = None
) -> tuple[torch.Tensor, float]:
    """Validated entry to :data:`ROPE_FREQUENCIES`.

    >>> inv, attn = compute_frequencies("default", None, rotary_dim=4, base=10000.0)
    >>> inv.tolist(), attn
    ([1.0, 0.01], 1.0)
    """
    check_choice("method", method, ROPE_FREQUENCIES)
    check_rotary_dim(rotary_dim, rotary_dim)
    if rotary_dim < 4 and method in ("ntk", "dynamic"):
        raise ValueError(f"method {method!r} needs rotary_dim >= 4 (it uses d / (d - 2)), got {rotary_dim}.")
    check_positive("base", base)
    if seq_len is not None and (isinstance(seq_len, bool) or int(seq_len) != seq_len or seq_len < 1):
        raise ValueError(f"seq_len must be None or an int >= 1, got {seq_len!r}.")
    expected = "default" if params is None else params.method
    if method != expected:
        raise ValueError(f"method {method!r} does not match the scaling params ({type(params).__name__}).")
    return ROPE_FREQUENCIES[method](params, rotary_dim, float(base), None if seq_len is None else int(seq_len))
