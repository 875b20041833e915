"""Peak memory and time of the extension methods' chunked attention at long lengths (default 32k tokens).

Each (method, length) runs in its own subprocess, so the peak is that call's own: the process's max RSS
growth over one ``extended_attention`` call on ``(1, heads, n, head_dim)`` fp32 q/k/v, against the
``n^2`` fp32 bytes one materialised score matrix per head would take. ``sdpa`` (torch's fused CPU
attention on the same inputs, plain causal RoPE) is the floor to compare with.

    OMP_NUM_THREADS=1 python benchmarks/bench_extension.py                       # 32k, 1 head, d=64
    python benchmarks/bench_extension.py --lengths 16384,32768 --heads 9 --kv-heads 3   # SmolLM2's shape

Rows are printed as a table and written as JSON to ``benchmarks/results/`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

METHODS = ("self-extend", "dca", "rerope", "leaky-rerope", "dynamic-yarn", "sdpa")


def _one(method: str, n: int, heads: int, kv_heads: int, dim: int, context: int) -> dict:
    import torch

    import ropekit
    from ropekit.eval.methods import extension_for
    from ropekit.extension import extended_attention, place

    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, heads, n, dim, generator=g)
    k, v = torch.randn(1, kv_heads, n, dim, generator=g), torch.randn(1, kv_heads, n, dim, generator=g)
    rope = ropekit.RopeConfig(head_dim=dim, base=100000.0)
    pos = torch.arange(n, dtype=torch.float64)
    q, k = place(q, rope, pos), place(k, rope, pos)  # as a HF attention function receives them
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if method == "sdpa":
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        params = None
    else:
        ext = extension_for(method, n / context, context)
        out = extended_attention(q, k, v, ext, rope, rotated=True)
        params = repr(ext)
    seconds = time.perf_counter() - t0
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024  # KiB -> MiB (Linux)
    assert bool(out.isfinite().all())
    return {"method": method, "params": params, "length": n, "heads": heads, "kv_heads": kv_heads, "head_dim": dim,
            "seconds": round(seconds, 2), "peak_rss_growth_mib": round(grew, 1),
            "n2_scores_mib": round(heads * n * n * 4 / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="32768", help="comma-separated token counts")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--kv-heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--context", type=int, default=8192, help="trained context L the defaults follow (SmolLM2)")
    ap.add_argument("--json", default=None, help="write the rows here (default: benchmarks/results/...)")
    ap.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        print(json.dumps(_one(a._one[0], int(a._one[1]), a.heads, a.kv_heads, a.head_dim, a.context)))
        return
    rows = []
    print(f"{'method':<14}{'length':>8}{'seconds':>9}{'peak MiB':>10}{'n^2 MiB':>10}  params")
    for n in (int(x) for x in a.lengths.split(",")):
        for m in a.methods.split(","):
            cmd = [sys.executable, __file__, "--_one", m, str(n), "--heads", str(a.heads), "--kv-heads",
                   str(a.kv_heads), "--head-dim", str(a.head_dim), "--context", str(a.context)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(f"{m:<14}{n:>8}{row['seconds']:>9.2f}{row['peak_rss_growth_mib']:>10.1f}{row['n2_scores_mib']:>10.1f}"
                  f"  {row['params'] or ''}")
    from ropekit.eval.store import atomic_write_text

    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    path = a.json or os.path.join(os.path.dirname(__file__), "results", f"bench_extension-{stamp}.json")
    meta = {"threads": os.environ.get("OMP_NUM_THREADS"), "argv": sys.argv[1:], "rows": rows}
    atomic_write_text(path, json.dumps(meta, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
