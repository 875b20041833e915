"""Argument checks shared by every layer: one wording, one place.

Bad input must raise a ``ValueError``/``TypeError`` that names the argument and the allowed range;
a silent wrong rotation is the failure mode RoPE code is known for.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

import torch

__all__ = [
    "check_choice",
    "check_int_dtype",
    "check_positions",
    "check_positive",
    "check_positive_int",
    "check_rotary_dim",
    "suggest",
]


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choices, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def check_choice(arg: str, value: object, choices: Iterable[str]) -> str:
    """Validate a string option against ``choices``; the error lists them and suggests close ones."""
    options = sorted(choices)
    if not isinstance(value, str) or value not in options:
        raise ValueError(
            f"{arg}={value!r} is not one of {options}." + (suggest(value, options) if isinstance(value, str) else "")
        )
    return value


def check_positive(arg: str, value: object) -> float:
    """A finite real number > 0 (scaling factors, bases, wavelengths)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{arg} must be a real number > 0, got {type(value).__name__} {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{arg} must be a finite number > 0, got {value!r}.")
    return float(value)


def check_positive_int(arg: str, value: object) -> int:
    """An ``int`` >= 1 (context lengths, dimensions)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{arg} must be an int >= 1, got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"{arg} must be an int >= 1, got {value}.")
    return value


def check_rotary_dim(rotary_dim: int, head_dim: int) -> int:
    """Rotary dim must be even (channels rotate in pairs) and fit inside the head."""
    if rotary_dim % 2:
        raise ValueError(f"rotary_dim must be even (channels rotate in pairs), got {rotary_dim}.")
    if not 2 <= rotary_dim <= head_dim:
        raise ValueError(f"rotary_dim must be in [2, head_dim={head_dim}], got {rotary_dim}.")
    return rotary_dim


def check_int_dtype(t: object, *, arg: str = "positions") -> None:
    """An integer tensor (dtype only: reads no values, so no device sync).

    Float positions are refused: a bf16/fp16 position cannot even represent integers above 256/2048,
    the most common source of silently wrong rotations.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{arg} must be an integer torch.Tensor, got {type(t).__name__}.")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{arg} must have an integer dtype (int32/int64), got {t.dtype}.")


def check_positions(positions: torch.Tensor, *, arg: str = "positions", limit: int | None = None) -> None:
    """Integer, non-negative and (when a bounded table is used) below ``limit``; one device sync.

    >>> import torch
    >>> check_positions(torch.tensor([0, 8]), limit=8)
    Traceback (most recent call last):
    ...
    ValueError: positions must be < 8 (the cos/sin table has 8 rows), got a maximum of 8.
    """
    check_int_dtype(positions, arg=arg)
    if positions.numel() == 0:
        return
    lo, hi = (int(v) for v in torch.aminmax(positions))
    if lo < 0:
        raise ValueError(f"{arg} must be >= 0, got a minimum of {lo}.")
    if limit is not None and hi >= limit:
        raise ValueError(f"{arg} must be < {limit} (the cos/sin table has {limit} rows), got a maximum of {hi}.")
