"""Paired bootstrap over evaluation units (windows / blocks / regions).

Every configuration is scored on the same units, so one set of resampled unit indices is applied to all
of them: CIs of differences and ratios are *paired* and much tighter than comparing two marginal CIs.
Seeds are averaged per unit before resampling (3 seeds are too few to resample); the seed spread is
reported separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["bootstrap_indices", "mean_over_seeds", "ppl_ci", "ratio_ci"]


def bootstrap_indices(n_units: int, n_boot: int = 2000, seed: int = 0) -> torch.Tensor:
    """``(n_boot, n_units)`` resampled unit indices (with replacement), deterministic in ``seed``."""
    if n_units < 1 or n_boot < 1:
        raise ValueError(f"n_units and n_boot must be >= 1, got {n_units} and {n_boot}.")
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_units, (n_boot, n_units), generator=gen)


def _pct(x: torch.Tensor, level: float) -> tuple[float, float]:
    lo = torch.quantile(x, (1 - level) / 2).item()
    hi = torch.quantile(x, 1 - (1 - level) / 2).item()
    return lo, hi


def ppl_ci(nll: Sequence[float], idx: torch.Tensor, level: float = 0.95) -> dict[str, float]:
    """Perplexity ``exp(mean NLL)`` over units, with a percentile bootstrap CI from ``idx``."""
    x = torch.as_tensor(nll, dtype=torch.float64)
    boot = x[idx].mean(dim=1).exp()
    lo, hi = _pct(boot, level)
    return {"ppl": float(x.mean().exp()), "lo": lo, "hi": hi}


def ratio_ci(nll_a: Sequence[float], nll_b: Sequence[float], idx: torch.Tensor, level: float = 0.95
             ) -> dict[str, float]:
    """Paired ratio ``ppl_a / ppl_b = exp(mean(nll_a - nll_b))`` with its bootstrap CI (same units)."""
    a = torch.as_tensor(nll_a, dtype=torch.float64)
    b = torch.as_tensor(nll_b, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired inputs must have the same units, got {tuple(a.shape)} and {tuple(b.shape)}.")
    d = a - b
    lo, hi = _pct(d[idx].mean(dim=1).exp(), level)
    return {"ratio": float(d.mean().exp()), "lo": lo, "hi": hi}


def mean_over_seeds(per_seed: Mapping[int, Sequence[float]]) -> list[float]:
    """Per-unit NLL averaged over seeds (all seeds must share the units)."""
    rows = [torch.as_tensor(v, dtype=torch.float64) for v in per_seed.values()]
    return torch.stack(rows).mean(0).tolist()
