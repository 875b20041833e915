"""Gemma-3-270M past its 32k context: perplexity by position at 48k, no scaling vs global-only vs every layer.

    python experiments/gemma3_long.py --out experiments/eval-gemma3-48k            # all methods (resumable)
    python experiments/gemma3_long.py --out DIR --method linear@2:full_attention   # one method

A one-shot 48k forward does not fit in 24 GB: transformers' SDPA path materialises (n, n) masks for the
sliding and the global layers (the first attempt, `ropekit eval --length 49152`, was OOM-killed at 14.9 GB).
So the window is prefilled in chunks through the KV cache, as an inference engine does: the same causal
attention over the same tokens (exact up to float rounding; ropekit's patch is verified for cached decode),
with (chunk, n) masks, and sliding layers that only keep their window. Length-dependent methods (dynamic NTK)
would see a growing length per chunk, so only static methods are run here. Each method runs in its own
process (peak RSS is per method) and writes ``OUT/<label>.json`` atomically; rerunning skips finished ones.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("none", "linear@2:full_attention", "linear@2")


def _spec(label: str):
    import ropekit

    if label == "none":
        return None
    name, _, rest = label.partition("@")
    factor, _, layer_type = rest.partition(":")
    scaling = {"linear": ropekit.Linear, "yarn": None}[name]
    if scaling is None:
        raise ValueError(f"unsupported method {label!r}")
    sc = scaling(factor=float(factor))
    return {layer_type: sc} if layer_type else sc


def chunked_losses(model, ids, chunk: int):
    """Next-token losses (float32, targets 1..n-1) of ``ids`` (n,), prefilled ``chunk`` tokens at a time."""
    import torch

    from ropekit.eval.perplexity import logit_chunk
    from ropekit.patching.verify import cache_kwargs, returned_cache

    head = model.get_output_embeddings()
    rows = logit_chunk(head.out_features)
    cache = None
    out = torch.empty(ids.numel() - 1, dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, ids.numel(), chunk):
            part = ids[start : start + chunk][None]
            kw = {} if cache is None else cache_kwargs(model.base_model, cache)
            res = model.base_model(input_ids=part, use_cache=True, **kw)
            cache = returned_cache(res)
            hidden = res.last_hidden_state[0]
            for a in range(0, part.shape[1], rows):
                b = min(a + rows, part.shape[1])
                pos = torch.arange(start + a, start + b)
                keep = pos < ids.numel() - 1  # the last token has no target
                if not bool(keep.any()):
                    continue
                logits = head(hidden[a:b][keep]).float()
                out[pos[keep]] = torch.nn.functional.cross_entropy(logits, ids[pos[keep] + 1], reduction="none")
    return out


def run_one(label: str, out_dir: Path, length: int, chunk: int) -> None:
    import torch

    import ropekit
    from ropekit.eval.perplexity import perplexity_record, summarize_perplexity
    from ropekit.eval.store import atomic_write_text
    from ropekit.eval.text import resolve_text, token_windows

    t0 = time.perf_counter()
    model, tok = ropekit.load_model("gemma3-270m")
    window = token_windows(tok, resolve_text("stdlib"), length, 1)[0]
    context = model.config.max_position_embeddings
    handle = ropekit.patch(model, _spec(label))
    try:
        t1 = time.perf_counter()
        losses = chunked_losses(model, window.ids, chunk)
        fwd_s = time.perf_counter() - t1
        plan = handle.describe()
    finally:
        handle.undo()
    rec = perplexity_record(losses, context)
    summary = summarize_perplexity([rec])
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result = {"method": label, "length": length, "chunk": chunk, "doc": window.doc, "sha": window.sha,
              "context": context, "buckets": summary, "forward_s": fwd_s, "wall_s": time.perf_counter() - t0,
              "peak_rss_gib": peak_gib, "threads": torch.get_num_threads(), "plan": plan,
              "losses_mean": float(losses.mean())}
    atomic_write_text(out_dir / f"{label.replace(':', '_')}.json", json.dumps(result, indent=1, default=str))
    print(json.dumps({k: result[k] for k in ("method", "forward_s", "peak_rss_gib")}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/eval-gemma3-48k")
    ap.add_argument("--method", default=None, help=f"one of {METHODS} (default: all, one process each)")
    ap.add_argument("--length", type=int, default=49152)
    ap.add_argument("--chunk", type=int, default=4096)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.method:
        run_one(a.method, out, a.length, a.chunk)
        return 0
    for label in METHODS:
        if (out / f"{label.replace(':', '_')}.json").exists():
            print(f"{label}: done, skipped")
            continue
        subprocess.run([sys.executable, __file__, "--out", a.out, "--method", label, "--length", str(a.length),
                        "--chunk", str(a.chunk)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
