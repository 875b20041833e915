"""Cost of an armed ``ropekit.guard`` on a forward: median of interleaved armed / unarmed runs.

    python benchmarks/bench_guard.py                      # SmolLM2-135M at 2048 tokens + a tiny Llama
    python benchmarks/bench_guard.py --lengths 512,2048 --rounds 7

Prints a table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch


def _median_pair(model: torch.nn.Module, ids: torch.Tensor, rounds: int) -> tuple[float, float]:
    import ropekit

    off, on = [], []
    with torch.no_grad():
        model(ids)  # warm-up
        for _ in range(rounds):  # interleaved, so drift in machine load hits both alike
            t = time.perf_counter()
            model(ids)
            off.append(time.perf_counter() - t)
            with ropekit.guard(model):
                t = time.perf_counter()
                model(ids)
                on.append(time.perf_counter() - t)
    return statistics.median(off), statistics.median(on)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--lengths", default="2048")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tiny-rounds", type=int, default=300)
    a = ap.parse_args()
    import transformers

    import ropekit

    rows = []
    cfg = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=128,
                                   vocab_size=256, max_position_embeddings=64)
    tiny = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    off, on = _median_pair(tiny, torch.zeros(1, 16, dtype=torch.long), a.tiny_rounds)
    rows.append({"model": "tiny-llama", "length": 16, "unarmed_s": off, "armed_s": on})
    model, _ = ropekit.load_model(a.model)
    for n in (int(x) for x in a.lengths.split(",")):
        ids = torch.randint(0, model.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(0))
        off, on = _median_pair(model, ids, a.rounds)
        rows.append({"model": a.model, "length": n, "unarmed_s": off, "armed_s": on})
    print(f"{'model':>14} {'tokens':>7} {'unarmed':>12} {'armed':>12} {'overhead':>10}")
    for r in rows:
        r["overhead_s"] = r["armed_s"] - r["unarmed_s"]
        print(f"{r['model']:>14} {r['length']:>7} {r['unarmed_s'] * 1e3:>10.2f}ms {r['armed_s'] * 1e3:>10.2f}ms "
              f"{r['overhead_s'] * 1e6:>8.0f}us")
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    path = os.path.join(os.path.dirname(__file__), "results", f"bench_guard-{stamp}.json")
    with open(path + ".tmp", "w") as fh:
        json.dump({"date": stamp, "threads": torch.get_num_threads(), "rows": rows}, fh, indent=1)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
