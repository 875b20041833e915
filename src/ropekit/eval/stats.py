"""Interval estimates: Wilson score intervals for accuracies, block bootstrap for perplexities, a
percentile bootstrap for the mean of per-trial scores (passkey key log-probabilities)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["block_bootstrap_ppl", "bootstrap_mean", "wilson_interval"]


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval (default 95%) for ``successes`` out of ``trials``.

    >>> lo, hi = wilson_interval(5, 10)
    >>> round(lo, 3), round(hi, 3)
    (0.237, 0.763)
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got successes={successes}, trials={trials}.")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def block_bootstrap_ppl(
    sums: Sequence[float], counts: Sequence[int], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Perplexity ``exp(sum / count)`` over blocks of consecutive tokens, with a bootstrap interval.

    ``sums[i]``/``counts[i]``: summed next-token loss (nats) and token count of block ``i`` (blocks from
    one or several windows). Resampling whole blocks keeps the strong correlation between neighbouring
    tokens inside a block, so the interval is not falsely narrow. Returns ``(ppl, lo, hi)``.

    >>> ppl, lo, hi = block_bootstrap_ppl([2.0, 4.0], [2, 2])
    >>> round(ppl, 4), lo <= ppl <= hi
    (4.4817, True)
    """
    if len(sums) != len(counts) or not sums:
        raise ValueError(f"sums and counts must be non-empty and equally long, got {len(sums)} and {len(counts)}.")
    s = torch.tensor(sums, dtype=torch.float64)
    c = torch.tensor(counts, dtype=torch.float64)
    if bool((c <= 0).any()):
        raise ValueError("every block count must be >= 1.")
    ppl = math.exp(float(s.sum() / c.sum()))
    if len(sums) == 1:
        return ppl, ppl, ppl
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(sums), (n_boot, len(sums)), generator=gen)
    boot = torch.exp(s[idx].sum(1) / c[idx].sum(1))
    q = torch.quantile(boot, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return ppl, float(q[0]), float(q[1])


def bootstrap_mean(
    values: Sequence[float], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values`` (one per independent trial) with a percentile bootstrap interval: ``(mean, lo, hi)``.

    Trials are resampled with replacement; one value gives a zero-width interval (no spread to estimate).

    >>> m, lo, hi = bootstrap_mean([-1.0, -2.0, -3.0, -4.0])
    >>> m, lo <= m <= hi, -4.0 <= lo and hi <= -1.0
    (-2.5, True, True)
    """
    if not values:
        raise ValueError("values must hold at least one trial's score.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    v = torch.tensor([float(x) for x in values], dtype=torch.float64)
    if not bool(torch.isfinite(v).all()):
        raise ValueError("values must be finite (a -inf log-probability means a zero-probability key).")
    mean = float(v.mean())
    if v.numel() == 1:
        return mean, mean, mean
    gen = torch.Generator().manual_seed(seed)
    boot = v[torch.randint(0, v.numel(), (n_boot, v.numel()), generator=gen)].mean(1)
    q = torch.quantile(boot, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return mean, float(q[0]), float(q[1])
