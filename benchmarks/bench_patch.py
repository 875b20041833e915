"""Patched vs stock HF: forward time and peak memory of a real model (SmolLM2-135M, Gemma-3-270M) at 2k / 8k tokens.

Each (mode, length) runs in its own subprocess so peak memory is isolated: on CPU the peak is the
process's max RSS growth over the forward (after the model is loaded and warmed up); on CUDA it is
``torch.cuda.max_memory_allocated``. Timing: median of ``--rounds`` forwards (one warm-up first).

    python benchmarks/bench_patch.py --lengths 2048,8192 --rounds 3
    python benchmarks/bench_patch.py --model gemma3-270m --lengths 2048,8192
    python benchmarks/bench_patch.py --modes stock,auto --lengths 2048 --device cuda
    python benchmarks/bench_patch.py --interleave --lengths 2048 --rounds 4   # one process, modes alternate

Modes: ``stock`` (HF as loaded), ``tables`` (ropekit's tables feed the model's own rotation), ``auto``
(fused kernels where verified for the model type, else tables), or a fused backend name. Rows are
printed and written as JSON to ``benchmarks/results/`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _one(mode: str, length: int, rounds: int, device: str, name: str) -> dict:
    import torch

    from ropekit.models import load_model
    from ropekit.patching import patch

    model, _ = load_model(name, device=device)
    ids = torch.randint(0, model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    handle = None if mode == "stock" else patch(model, None, backend=mode)

    def fwd() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            model.base_model(input_ids=ids, use_cache=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    fwd()  # warm-up (also sets the memory peak)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.startswith("cuda")
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    )
    times = [fwd() for _ in range(rounds)]
    if handle is not None:
        handle.undo()
    path = "stock" if handle is None else ("fused" if handle.fused else "tables")
    return {"model": name, "mode": mode, "path": path, "length": length, "median_s": statistics.median(times),
            "times_s": times, "peak_mib": peak, "threads": torch.get_num_threads(), "device": device}


def _interleaved(modes: list[str], length: int, rounds: int, device: str, name: str) -> list[dict]:
    """Timing only: all modes in one process, alternating every round, so load drift hits them alike."""
    import torch

    from ropekit.models import load_model
    from ropekit.patching import patch

    model, _ = load_model(name, device=device)
    ids = torch.randint(0, model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0)).to(device)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds + 1):  # round 0 is a warm-up
        for mode in modes:
            handle = None if mode == "stock" else patch(model, None, backend=mode)
            t0 = time.perf_counter()
            with torch.no_grad():
                model.base_model(input_ids=ids, use_cache=False)
            if r:
                times[mode].append(time.perf_counter() - t0)
            if handle is not None:
                handle.undo()
    rows = []
    stock = statistics.median(times["stock"]) if "stock" in times else None
    for mode, ts in times.items():
        med = statistics.median(ts)
        rel = f"  {med / stock:5.3f}x stock" if stock else ""
        print(f"{name:>13} {mode:>9} {length:>6} tok  median {med:7.2f} s{rel}  (interleaved rounds "
              f"{', '.join(f'{t:.2f}' for t in ts)})", flush=True)
        rows.append({"model": name, "mode": mode, "length": length, "median_s": med, "times_s": ts,
                     "interleaved": True, "threads": torch.get_num_threads(), "device": device})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="a ropekit.load_model name or path")
    ap.add_argument("--modes", default="stock,tables,auto")
    ap.add_argument("--lengths", default="2048,8192")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="write the rows here (default: benchmarks/results/...)")
    ap.add_argument("--interleave", action="store_true", help="timing only, modes alternating in one process")
    ap.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        print(json.dumps(_one(a._one[0], int(a._one[1]), a.rounds, a.device, a.model)))
        return
    rows = []
    if a.interleave:
        for length in (int(x) for x in a.lengths.split(",")):
            rows += _interleaved(a.modes.split(","), length, a.rounds, a.device, a.model)
        _write(rows, a)
        return
    for length in (int(x) for x in a.lengths.split(",")):
        for mode in a.modes.split(","):
            cmd = [sys.executable, __file__, "--_one", mode, str(length), "--rounds", str(a.rounds),
                   "--device", a.device, "--model", a.model]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(f"{a.model:>13} {mode:>9} ({row['path']:>6}) {length:>6} tok  median {row['median_s']:7.2f} s  "
                  f"(rounds {', '.join(f'{t:.2f}' for t in row['times_s'])})  peak +{row['peak_mib']:7.1f} MiB",
                  flush=True)
    _write(rows, a)


def _write(rows: list[dict], a: argparse.Namespace) -> None:
    import os
    import platform

    import transformers

    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    path = a.json or os.path.join(os.path.dirname(__file__), "results", f"bench_patch-{a.model}-{stamp}.json")
    meta = {"date": stamp, "transformers": transformers.__version__, "machine": platform.machine(),
            "cpus": os.cpu_count(), "rows": rows}
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(meta, fh, indent=1)
    os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
