"""Per-frequency summary of a RoPE config: what each pair does within the trained context and what
the scaling changes: the data behind ``ropekit inspect`` (table, JSON) and :func:`ropekit.plots.plot_wavelengths`.
Presentation, so it sits on top of core (core never imports it)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.scaling import Proportional

__all__ = ["extended_context", "frequency_summary"]


def extended_context(cfg: RopeConfig) -> int | None:
    """The context the scaling aims at: the advertised max_position_embeddings when it exceeds the
    original context (Llama 3.1: 131072), else original context x factor."""
    L0 = cfg.original_max_position_embeddings
    if cfg.max_position_embeddings and L0 and cfg.max_position_embeddings > L0:
        return cfg.max_position_embeddings
    factor = getattr(cfg.scaling, "factor", None) or getattr(cfg.scaling, "alpha", None)
    if L0 is not None and factor:
        return round(L0 * factor)
    return cfg.max_position_embeddings


def _unscaled(cfg: RopeConfig) -> RopeConfig:
    if isinstance(cfg.scaling, Proportional):
        return dataclasses.replace(cfg, scaling=dataclasses.replace(cfg.scaling, factor=1.0))
    return dataclasses.replace(cfg, scaling=None)


def frequency_summary(cfg: RopeConfig, seq_len: int | None = None) -> dict[str, Any]:
    """A JSON-ready summary.

    ``pairs[i]`` has the pair's inverse frequency and wavelength (tokens per full turn) before and
    after scaling, and ``ratio`` = scaled / unscaled frequency. ``seq_len`` selects the regime of
    length-dependent methods (default: the extended context).

    >>> import ropekit
    >>> s = frequency_summary(ropekit.RopeConfig(head_dim=8, max_position_embeddings=100))
    >>> s["rotary_pairs"], s["pairs_full_turn_in_context"]
    (4, 2)
    """
    L0 = cfg.original_max_position_embeddings
    ext = extended_context(cfg)
    if seq_len is None and cfg.scaling is not None and cfg.scaling.depends_on_seq_len:
        seq_len = ext
    before = _unscaled(cfg).inv_freq().tolist()
    after = cfg.inv_freq(seq_len).tolist()
    pairs = []
    for i, (b, a) in enumerate(zip(before, after)):
        pairs.append(
            {
                "pair": i,
                "inv_freq": a,
                "inv_freq_unscaled": b,
                "wavelength": 2 * math.pi / a if a > 0 else math.inf,
                "wavelength_unscaled": 2 * math.pi / b if b > 0 else math.inf,
                "ratio": a / b if b > 0 else 1.0,
            }
        )
    changed = [p["pair"] for p in pairs if abs(p["ratio"] - 1) > 1e-9]
    full_turn = None if L0 is None else sum(1 for p in pairs if p["wavelength_unscaled"] <= L0)
    return {
        "method": cfg.method,
        "head_dim": cfg.head_dim,
        "rotary_dim": cfg.rotary_dim,
        "rotary_pairs": len(pairs),
        "base": cfg.base,
        "layout": cfg.layout,
        "scaling": None if cfg.scaling is None else {"method": cfg.method, **dataclasses.asdict(cfg.scaling)},
        "attention_factor": cfg.attention_factor,
        "original_context": L0,
        "extended_context": ext,
        "seq_len": seq_len,
        "pairs_full_turn_in_context": full_turn,
        "pairs_changed": changed,
        "pairs": pairs,
    }
