"""Evaluation protocols. Every one scores the SAME target tokens at every context length, so lengths compare.

A *span* ``(start, length, n_score)`` feeds ``stream[start : start + length]`` to the model (a window of
``length`` tokens) and scores its last ``n_score`` next-token predictions, i.e. the targets
``stream[start + length + 1 - n_score : start + length + 1]``.

- **same-target** (the headline): N windows; the last ``target`` tokens of each window are fixed while the
  context before them grows (L, 2L, 4L, 8L). Every target token has at least ``C - target`` tokens of
  context, so the only thing that changes with C is how much (and how far away) context there is.
- **non-overlapping** (ALiBi paper's default): blocks of ``max_context`` tokens cut into independent
  chunks of C; every token of a chunk is scored, so early tokens in each chunk see little context
  (the "early token curse").
- **sliding window** (ALiBi paper, stride S): contiguous regions scored S tokens at a time, each S-token
  step seeing a window of C tokens that ends with it.

Per-unit (window / block / region) mean NLLs are returned so that CIs can be paired over units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ropekit.study.distributed import Dist

__all__ = ["Span", "SpanPlan", "evaluate_span_plan", "make_span_plan", "score_spans"]

Span = tuple[int, int, int]  # (start, length, n_score)


@dataclass(frozen=True)
class SpanPlan:
    """Spans per protocol and context length, each tagged with the unit it is averaged into."""

    contexts: tuple[int, ...]
    #: protocol -> context -> list of (unit index, span)
    spans: dict[str, dict[int, list[tuple[int, Span]]]]
    n_units: dict[str, int]


def _evenly(lo: int, hi: int, n: int) -> list[int]:
    if hi < lo:
        raise ValueError(f"the held-out stream is too short: need positions in [{lo}, {hi}].")
    return [lo + (hi - lo) * i // max(1, n - 1) for i in range(n)] if n > 1 else [lo]


def make_span_plan(
    n_tokens: int,
    contexts: Sequence[int],
    *,
    target: int,
    n_windows: int,
    n_blocks: int,
    n_regions: int,
    region_len: int,
    stride: int,
    protocols: Sequence[str] = ("same_target", "nonoverlap", "sliding"),
) -> SpanPlan:
    """Deterministic spans over a held-out stream of ``n_tokens`` tokens, spread evenly through it."""
    contexts = tuple(sorted(contexts))
    cmax = contexts[-1]
    if not 1 <= target <= contexts[0]:
        raise ValueError(f"target={target} must be in [1, the shortest context {contexts[0]}].")
    if not 1 <= stride <= contexts[0] or region_len % stride:
        raise ValueError(f"stride={stride} must be in [1, {contexts[0]}] and divide region_len={region_len}.")
    if any(cmax % c for c in contexts):
        raise ValueError(f"contexts={contexts} must all divide the longest one (non-overlapping blocks).")
    spans: dict[str, dict[int, list[tuple[int, Span]]]] = {}
    units: dict[str, int] = {}
    if "same_target" in protocols:
        # window ends (exclusive end of the targets), far enough in that the longest context fits
        ends = _evenly(cmax + 1, n_tokens, n_windows)
        spans["same_target"] = {c: [(u, (e - c - 1, c, target)) for u, e in enumerate(ends)] for c in contexts}
        units["same_target"] = n_windows
    if "nonoverlap" in protocols:
        starts = _evenly(0, n_tokens - cmax - 1, n_blocks)
        spans["nonoverlap"] = {
            c: [(u, (s + j * c, c, c)) for u, s in enumerate(starts) for j in range(cmax // c)] for c in contexts
        }
        units["nonoverlap"] = n_blocks
    if "sliding" in protocols:
        # region r scores targets stream[r0 + 1 : r0 + 1 + region_len], stride tokens per window
        starts = _evenly(cmax, n_tokens - region_len - 1, n_regions)
        spans["sliding"] = {
            c: [(u, (r0 + (i + 1) * stride - c, c, stride)) for u, r0 in enumerate(starts)
                for i in range(region_len // stride)] for c in contexts
        }
        units["sliding"] = n_regions
    return SpanPlan(contexts, spans, units)


@torch.no_grad()
def score_spans(model: torch.nn.Module, stream: torch.Tensor, spans: Sequence[Span], *, device: torch.device,
                batch_tokens: int = 8192) -> list[torch.Tensor]:
    """Per-target NLLs (float64, length ``n_score``) for each span; equal-length spans are batched."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(spans)
    by_len: dict[int, list[int]] = {}
    for i, (_, length, _) in enumerate(spans):
        by_len.setdefault(length, []).append(i)
    for length, idxs in by_len.items():
        per = max(1, batch_tokens // length)
        for j in range(0, len(idxs), per):
            chunk = idxs[j : j + per]
            rows = torch.stack([stream[spans[i][0] : spans[i][0] + length + 1] for i in chunk]).long().to(device)
            nll = model.token_nll(rows).double().cpu()  # (rows, length)
            for r, i in enumerate(chunk):
                out[i] = nll[r, length - spans[i][2] :]
    return out


def evaluate_span_plan(model: torch.nn.Module, stream: torch.Tensor, plan: SpanPlan, *, dist: Dist | None = None,
                  batch_tokens: int = 8192, contexts: Sequence[int] | None = None,
                  before_context=None) -> dict[str, dict[int, list[float]]]:
    """``{protocol: {context: per-unit mean NLL}}``. Spans are sharded over DDP ranks and gathered.

    ``before_context(c)`` (optional) runs before each context length, e.g. to set an eval-time RoPE scaling.
    """
    dist = dist or Dist()
    result: dict[str, dict[int, list[float]]] = {}
    for c in contexts or plan.contexts:
        if before_context is not None:
            before_context(c)
        for proto, per_ctx in plan.spans.items():
            tagged = per_ctx[c]
            mine = tagged[dist.rank :: dist.world]
            nlls = score_spans(model, stream, [s for _, s in mine], device=dist.device, batch_tokens=batch_tokens)
            local = [(u, float(x.sum()), x.numel()) for (u, _), x in zip(mine, nlls)]
            sums = torch.zeros(plan.n_units[proto], dtype=torch.float64)
            counts = torch.zeros(plan.n_units[proto], dtype=torch.float64)
            for part in dist.gather(local):
                for u, s, n in part:
                    sums[u] += s
                    counts[u] += n
            result.setdefault(proto, {})[c] = (sums / counts).tolist()
    return result
