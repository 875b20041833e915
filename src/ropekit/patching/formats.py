"""The shapes HF rotary modules hand to their attention, and how to recognise which one a module uses.

Every HF ``*RotaryEmbedding`` turns positions into cos/sin, but not in one format: most duplicate the
frequencies for the half layout (``cat(f, f)``), GPT-J-style models repeat each one (``f0 f0 f1 f1``),
gpt-oss hands over the half-width table, GPT-J the half-width ``(sin, cos)``, Llama-4 a complex
``exp(i*angle)``. ropekit does not trust a
table of model types for this: at patch time it computes its own cos/sin for the model's own config,
renders it in each format, and keeps the one that reproduces the module's output (``detect_format``).

Each format: ``(cos, sin)`` float32 ``(..., rotary_dim // 2)`` (attention factor applied) and the output
dtype -> what the model's attention expects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["FORMATS", "RotaryFormat", "as_tensors", "detect_format", "render"]

#: (cos, sin) float32 (..., rotary_dim // 2), output dtype -> the module's return value
RotaryFormat = Callable[[torch.Tensor, torch.Tensor, torch.dtype], Any]


def _dup_half(cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # NeoX/HF "half" pairing: channel i and i + d/2 share frequency i
    return torch.cat((cos, cos), dim=-1).to(dtype), torch.cat((sin, sin), dim=-1).to(dtype)


def _dup_interleaved(cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # GPT-J pairing: channels 2i and 2i+1 share frequency i
    return cos.repeat_interleave(2, dim=-1).to(dtype), sin.repeat_interleave(2, dim=-1).to(dtype)


def _pairs(cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # one entry per pair; the attention expands it itself
    return cos.to(dtype), sin.to(dtype)


def _pairs_sin_first(cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # GPT-J / CodeGen hand over (sin, cos)
    return sin.to(dtype), cos.to(dtype)


def _complex(cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # exp(i * angle), the freqs_cis of Meta's reference code (complex64 whatever the model dtype)
    return torch.complex(cos, sin)


#: registry: format name -> renderer. Unknown names raise in :func:`render`.
FORMATS: dict[str, RotaryFormat] = {
    "dup-half": _dup_half,
    "dup-interleaved": _dup_interleaved,
    "pairs": _pairs,
    "pairs-sin-first": _pairs_sin_first,
    "complex": _complex,
}


def render(fmt: str, cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype) -> Any:
    """``cos``/``sin`` float32 ``(..., rotary_dim // 2)`` in format ``fmt`` at ``dtype``."""
    try:
        fn = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown rotary format {fmt!r}; known: {sorted(FORMATS)}.") from None
    return fn(cos, sin, dtype)


def as_tensors(out: Any) -> tuple[torch.Tensor, ...]:
    """A module's return value as a flat tuple of tensors (complex split into real and imaginary)."""
    if isinstance(out, torch.Tensor):
        return (out.real, out.imag) if out.is_complex() else (out,)
    if isinstance(out, (tuple, list)) and out and all(isinstance(t, torch.Tensor) for t in out):
        return tuple(out)
    raise TypeError(f"rotary module returned {type(out).__name__}, not a tensor or a tuple of tensors.")


def detect_format(
    stock: Any, cos: torch.Tensor, sin: torch.Tensor, atol: torch.Tensor | float
) -> tuple[str | None, float]:
    """The format whose rendering of ``cos``/``sin`` matches ``stock`` within ``atol``, and the best error.

    ``atol`` broadcasts against ``(..., positions, 1)`` so the tolerance can grow with the position (the
    module forms its angles in fp32). Returns ``(None, best_error)`` when no format matches.
    """
    got = as_tensors(stock)
    is_complex = isinstance(stock, torch.Tensor) and stock.is_complex()
    best = float("inf")
    for name, fn in FORMATS.items():
        if (name == "complex") != is_complex:  # a complex tensor and a (cos, sin) pair are different contracts
            continue
        want = as_tensors(fn(cos, sin, torch.float32))
        if len(want) != len(got) or any(w.shape[-1] != g.shape[-1] for w, g in zip(want, got)):
            continue
        try:
            errs = [(g.float() - w).abs() for w, g in zip(want, got)]
            excess = max(float((e - atol).max()) for e in errs)
            err = max(float(e.max()) for e in errs)
        except RuntimeError:  # shapes that do not broadcast: not this format
            continue
        best = min(best, err)
        if excess <= 0:
            return name, err
    return None, best
