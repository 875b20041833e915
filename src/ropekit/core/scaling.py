"""Scaling configs: one frozen, keyword-only dataclass per method, field names as HF's keys.

Each class validates itself on construction, so an invalid config cannot exist. The frequency
functions that use them live in :mod:`ropekit.core.frequencies`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ropekit.core.validation import check_choice, check_positive, check_positive_int

__all__ = [
    "NTK",
    "SCALING_CLASSES",
    "DynamicNTK",
    "Linear",
    "Llama3",
    "LongRoPE",
    "Proportional",
    "Scaling",
    "YaRN",
    "scaling_from_factor",
]


@dataclass(frozen=True, kw_only=True)
class Scaling:
    """Base of every scaling config; ``method`` is its registry name."""

    method: ClassVar[str] = ""
    #: True when the frequencies depend on the current sequence length (dynamic NTK, LongRoPE).
    depends_on_seq_len: ClassVar[bool] = False

    @property
    def context(self) -> int | None:
        """The trained context this scaling refers to, when the method has one."""
        return getattr(self, "original_max_position_embeddings", None)


@dataclass(frozen=True, kw_only=True)
class Linear(Scaling):
    """Position interpolation (Chen et al. 2023): every frequency divided by ``factor``."""

    method: ClassVar[str] = "linear"
    factor: float  # > 0; positions are compressed by this much

    def __post_init__(self) -> None:
        check_positive("factor", self.factor)


@dataclass(frozen=True, kw_only=True)
class NTK(Scaling):
    """Static NTK-aware scaling (bloc97): base' = base * alpha ** (d / (d - 2))."""

    method: ClassVar[str] = "ntk"
    alpha: float  # > 0; the NTK alpha, commonly set to the context extension factor

    def __post_init__(self) -> None:
        check_positive("alpha", self.alpha)


@dataclass(frozen=True, kw_only=True)
class DynamicNTK(Scaling):
    """Dynamic NTK (emozilla; HF ``"dynamic"``): the base grows with the current length past the context."""

    method: ClassVar[str] = "dynamic"
    depends_on_seq_len: ClassVar[bool] = True
    factor: float  # > 0; HF's `factor`
    original_max_position_embeddings: int  # length beyond which the base grows (HF: config.max_position_embeddings)

    def __post_init__(self) -> None:
        check_positive("factor", self.factor)
        check_positive_int("original_max_position_embeddings", self.original_max_position_embeddings)


@dataclass(frozen=True, kw_only=True)
class YaRN(Scaling):
    """YaRN (Peng et al. 2023): per-frequency blend of interpolation and extrapolation, plus mscale."""

    method: ClassVar[str] = "yarn"
    factor: float  # > 0; context extension factor s
    original_max_position_embeddings: int  # pretraining context L0 that feeds the correction range
    beta_fast: float = 32.0  # rotations per L0 above which a frequency is extrapolated (kept)
    beta_slow: float = 1.0  # rotations per L0 below which a frequency is fully interpolated
    mscale: float | None = None  # DeepSeek-style numerator mscale (used with mscale_all_dim)
    mscale_all_dim: float | None = None  # DeepSeek-style denominator mscale
    attention_factor: float | None = None  # overrides the computed mscale when given
    truncate: bool = True  # floor/ceil the correction range (False for gpt-oss)

    def __post_init__(self) -> None:
        check_positive("factor", self.factor)
        check_positive_int("original_max_position_embeddings", self.original_max_position_embeddings)
        check_positive("beta_fast", self.beta_fast)
        check_positive("beta_slow", self.beta_slow)
        if self.beta_fast <= self.beta_slow:
            raise ValueError(
                f"beta_fast must be > beta_slow (fast rotations bound the extrapolated band), "
                f"got beta_fast={self.beta_fast}, beta_slow={self.beta_slow}."
            )
        for name in ("mscale", "mscale_all_dim"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise ValueError(f"{name} must be None or a number >= 0, got {v!r}.")
        if self.attention_factor is not None:
            check_positive("attention_factor", self.attention_factor)
        if not isinstance(self.truncate, bool):
            raise TypeError(f"truncate must be a bool, got {type(self.truncate).__name__}.")


def _factor_list(name: str, values: object) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of positive floats, got {type(values).__name__}.")
    out = tuple(float(v) for v in values)  # type: ignore[union-attr]
    if not out or any(not math.isfinite(v) or v <= 0 for v in out):
        raise ValueError(f"{name} must be a non-empty sequence of finite floats > 0.")
    return out


@dataclass(frozen=True, kw_only=True)
class LongRoPE(Scaling):
    """LongRoPE / Phi-3 (Ding et al. 2024): per-frequency rescale factors, short below L0, long above."""

    method: ClassVar[str] = "longrope"
    depends_on_seq_len: ClassVar[bool] = True
    short_factor: tuple[float, ...]  # rotary_dim // 2 divisors used while seq_len <= L0
    long_factor: tuple[float, ...]  # rotary_dim // 2 divisors used once seq_len > L0
    original_max_position_embeddings: int  # L0, the switch point
    factor: float | None = None  # max_position_embeddings / L0; feeds the default attention factor
    attention_factor: float | None = None  # overrides sqrt(1 + ln(factor) / ln(L0)) when given

    def __post_init__(self) -> None:
        object.__setattr__(self, "short_factor", _factor_list("short_factor", self.short_factor))
        object.__setattr__(self, "long_factor", _factor_list("long_factor", self.long_factor))
        if len(self.short_factor) != len(self.long_factor):
            raise ValueError(
                f"short_factor and long_factor must have the same length (rotary_dim // 2), got "
                f"{len(self.short_factor)} and {len(self.long_factor)}."
            )
        check_positive_int("original_max_position_embeddings", self.original_max_position_embeddings)
        if self.factor is not None:
            check_positive("factor", self.factor)
        if self.attention_factor is not None:
            check_positive("attention_factor", self.attention_factor)


@dataclass(frozen=True, kw_only=True)
class Llama3(Scaling):
    """Llama 3.1: wavelengths above L0/low_freq_factor interpolated by ``factor``, below L0/high kept."""

    method: ClassVar[str] = "llama3"
    factor: float  # > 0; interpolation factor for the low-frequency band
    original_max_position_embeddings: int  # L0 (8192 for Llama 3.1)
    low_freq_factor: float = 1.0  # wavelengths > L0 / low_freq_factor are divided by factor
    high_freq_factor: float = 4.0  # wavelengths < L0 / high_freq_factor are kept

    def __post_init__(self) -> None:
        check_positive("factor", self.factor)
        check_positive_int("original_max_position_embeddings", self.original_max_position_embeddings)
        check_positive("low_freq_factor", self.low_freq_factor)
        check_positive("high_freq_factor", self.high_freq_factor)
        if self.low_freq_factor >= self.high_freq_factor:
            raise ValueError(
                f"low_freq_factor must be < high_freq_factor, got low_freq_factor={self.low_freq_factor}, "
                f"high_freq_factor={self.high_freq_factor}."
            )


@dataclass(frozen=True, kw_only=True)
class Proportional(Scaling):
    """Gemma-style proportional partial rotary: the exponent spans the full head_dim, only the first
    ``partial_rotary_factor * head_dim / 2`` frequencies are non-zero (the rest rotate by 0)."""

    method: ClassVar[str] = "proportional"
    partial_rotary_factor: float = 1.0  # fraction of frequencies kept, in (0, 1]
    factor: float = 1.0  # > 0; divides every frequency (like linear)

    def __post_init__(self) -> None:
        check_positive("partial_rotary_factor", self.partial_rotary_factor)
        if self.partial_rotary_factor > 1:
            raise ValueError(f"partial_rotary_factor must be in (0, 1], got {self.partial_rotary_factor}.")
        check_positive("factor", self.factor)


SCALING_CLASSES: dict[str, type[Scaling]] = {
    cls.method: cls for cls in (Linear, NTK, DynamicNTK, YaRN, LongRoPE, Llama3, Proportional)
}

def _from_factor_none(factor: float, L0: int) -> None:
    return None


def _from_factor_linear(factor: float, L0: int) -> Linear:
    return Linear(factor=factor)


def _from_factor_ntk(factor: float, L0: int) -> NTK:
    return NTK(alpha=factor)


def _from_factor_dynamic(factor: float, L0: int) -> DynamicNTK:
    return DynamicNTK(factor=factor, original_max_position_embeddings=L0)


def _from_factor_yarn(factor: float, L0: int) -> YaRN:
    return YaRN(factor=factor, original_max_position_embeddings=L0)


def _from_factor_llama3(factor: float, L0: int) -> Llama3:
    return Llama3(factor=factor, original_max_position_embeddings=L0)


# one builder per method that a single extension factor fully describes; an unlisted name raises
_FROM_FACTOR: dict[str, Callable[[float, int], Scaling | None]] = {
    "none": _from_factor_none,
    "linear": _from_factor_linear,
    "ntk": _from_factor_ntk,
    "dynamic": _from_factor_dynamic,
    "yarn": _from_factor_yarn,
    "llama3": _from_factor_llama3,
}

#: methods that a single extension factor fully describes (eval and study sweeps use these).
FACTOR_METHODS = tuple(_FROM_FACTOR)


def scaling_from_factor(method: str, factor: float, *, original_max_position_embeddings: int) -> Scaling | None:
    """Build the scaling for ``method`` that extends a model trained on ``original_max_position_embeddings``
    tokens by ``factor`` ("none" gives ``None``). NTK uses alpha = factor. A name outside
    ``FACTOR_METHODS`` raises ``ValueError`` listing them.

    >>> scaling_from_factor("yarn", 2.0, original_max_position_embeddings=8192)
    YaRN(factor=2.0, original_max_position_embeddings=8192, beta_fast=32.0, beta_slow=1.0, mscale=None, \
mscale_all_dim=None, attention_factor=None, truncate=True)
    """
    check_choice("method", method, FACTOR_METHODS)
    check_positive("factor", factor)
    return _FROM_FACTOR[method](factor, original_max_position_embeddings)
