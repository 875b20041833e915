"""Perplexity by position bucket: where in the window does a context-extension method break down?

Protocol: non-overlapping windows of the evaluated length (each window is one forward pass from
position 0, no sliding context). The loss of the token at position ``t`` (predicted from tokens
``0 .. t-1``) goes to the bucket containing ``t``; bucket edges are multiples of half the model's
trained context ``L`` (0-½L, ½L-L, L-1.5L, 1.5L-2L, ...), so every method is scored on the same target
tokens. Inside a bucket, losses are summed in blocks of consecutive tokens for the block bootstrap.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ropekit.eval.stats import block_bootstrap_ppl

__all__ = [
    "LOGIT_ELEMENTS", "bucket_edges", "bucket_label", "logit_chunk", "overall_ppl", "perplexity_record",
    "summarize_perplexity", "token_losses",
]

BLOCK = 256  # tokens per bootstrap block
LOGIT_ELEMENTS = 1 << 26  # logits formed at once by token_losses (256 MB in fp32, plus as much for log-softmax)


def logit_chunk(vocab_size: int) -> int:
    """Positions per logits block for ``vocab_size``: at most 1024, and at most :data:`LOGIT_ELEMENTS` logits.

    >>> logit_chunk(49152), logit_chunk(262144)
    (1024, 256)
    """
    return max(1, min(1024, LOGIT_ELEMENTS // vocab_size))


def bucket_edges(length: int, context: int) -> list[tuple[int, int]]:
    """Target-position buckets ``[lo, hi)`` at multiples of ``context / 2``, up to ``length``.

    >>> bucket_edges(16384, 8192)
    [(0, 4096), (4096, 8192), (8192, 12288), (12288, 16384)]
    >>> bucket_edges(5000, 4096)
    [(0, 2048), (2048, 4096), (4096, 5000)]
    """
    if length < 2 or context < 2:
        raise ValueError(f"length and context must be >= 2, got length={length}, context={context}.")
    step = context // 2
    edges = [*range(0, length, step), length]
    return [(lo, hi) for lo, hi in itertools.pairwise(edges) if hi > max(lo, 1)]


def bucket_label(lo: int, hi: int) -> str:
    """``"8k-12k"`` style label (``k`` = 1024 tokens)."""

    def fmt(n: int) -> str:
        return f"{n / 1024:g}k" if n % 512 == 0 else str(n)

    return f"{fmt(lo)}-{fmt(hi)}"


@torch.no_grad()
def token_losses(model: Any, ids: torch.Tensor, *, chunk: int | None = None) -> torch.Tensor:
    """Next-token losses (nats, float32) for targets ``1 .. n-1`` of ``ids`` ``(n,)`` in one forward.

    Logits are formed ``chunk`` positions at a time: a 16k window of a 49k vocabulary would need 3 GB.
    ``None``: as many positions as keep one chunk's logits under :data:`LOGIT_ELEMENTS` (1024 for a 49k
    vocabulary, 256 for Gemma's 262k, whose 1024-row chunk alone took 2 GB with its log-softmax).
    """
    device = next(model.parameters()).device
    x = ids.to(device).unsqueeze(0)
    hidden = model.base_model(input_ids=x, use_cache=False).last_hidden_state[0]
    head = model.get_output_embeddings()
    if chunk is None:
        chunk = logit_chunk(head.out_features if hasattr(head, "out_features") else model.config.vocab_size)
    elif isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1 (positions per logits block) or None, got {chunk!r}.")
    out = torch.empty(ids.numel() - 1, dtype=torch.float32)
    for start in range(0, ids.numel() - 1, chunk):
        stop = min(start + chunk, ids.numel() - 1)
        logits = head(hidden[start:stop]).float()
        out[start:stop] = torch.nn.functional.cross_entropy(logits, x[0, start + 1 : stop + 1], reduction="none").cpu()
    return out


def perplexity_record(losses: torch.Tensor, context: int) -> dict[str, Any]:
    """Per-bucket block sums of ``losses`` (target positions ``1 .. n-1``) for a JSON cell."""
    length = losses.numel() + 1
    buckets = []
    for lo, hi in bucket_edges(length, context):
        seg = losses[max(lo, 1) - 1 : hi - 1].double()
        sums = [float(b.sum()) for b in seg.split(BLOCK)]
        counts = [int(b.numel()) for b in seg.split(BLOCK)]
        buckets.append({"lo": lo, "hi": hi, "sums": sums, "counts": counts})
    return {"buckets": buckets, "mean_loss": float(losses.double().mean())}


def summarize_perplexity(records: Iterable[dict[str, Any]], *, n_boot: int = 1000) -> list[dict[str, Any]]:
    """Pool windows: per bucket ``{"lo", "hi", "label", "ppl", "lo95", "hi95", "tokens", "windows"}``."""
    pooled: dict[tuple[int, int], tuple[list[float], list[int], int]] = {}
    for rec in records:
        for b in rec["buckets"]:
            s, c, n = pooled.setdefault((b["lo"], b["hi"]), ([], [], 0))
            s.extend(b["sums"])
            c.extend(b["counts"])
            pooled[(b["lo"], b["hi"])] = (s, c, n + 1)
    out = []
    for (lo, hi), (s, c, n) in sorted(pooled.items()):
        ppl, lo95, hi95 = block_bootstrap_ppl(s, c, n_boot=n_boot)
        out.append(
            {"lo": lo, "hi": hi, "label": bucket_label(lo, hi), "ppl": ppl, "lo95": lo95, "hi95": hi95,
             "tokens": int(sum(c)), "windows": n}
        )
    return out


def overall_ppl(summary: Sequence[dict[str, Any]]) -> float:
    """Token-weighted perplexity over all buckets of a summary."""
    tot = sum(b["tokens"] for b in summary)
    return math.exp(sum(math.log(b["ppl"]) * b["tokens"] for b in summary) / tot)
