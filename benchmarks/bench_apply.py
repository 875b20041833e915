"""Benchmark RoPE apply: ropekit backends vs peers vs a same-bytes copy (not a test).

    python benchmarks/bench_apply.py                       # all shapes, fp32 + bf16, fwd/bwd/fwd+bwd
    python benchmarks/bench_apply.py --quick --threads 1   # smaller shapes
    python benchmarks/bench_apply.py --shapes llama3-8b --modes fwd --impls copy-floor,ropekit-cpu-inplace

Timing: CPU = wall-clock median per call; GPU = CUDA-event median with the L2 flushed before every
call (plus, with ``--graphs``, forward device time from CUDA-graph replays, which removes host
overhead). Each round runs every implementation once per (shape, dtype, mode), rounds are
interleaved so a noisy neighbour hits all of them alike, and the reported time is the median of the
round medians. ``x floor`` is the median over rounds of the time divided by the copy floor's
(same bytes, x2 for fwd+bwd), the two timed alternately in the same window.
Results: a table on stdout and JSON in ``benchmarks/results/`` (written atomically).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import BUILDERS, Case, Impl, Unsupported

SHAPES = {  # name: (batch, seqlen, q_heads, kv_heads, head_dim, scattered decode positions)
    "llama3-8b": (1, 4096, 32, 8, 128, False),
    "long-64k": (1, 65536, 32, 8, 128, False),
    "decode-64": (64, 1, 32, 8, 128, True),
}
QUICK = {
    "llama3-8b-512": (1, 512, 32, 8, 128, False),
    "long-16k": (1, 16384, 32, 8, 128, False),
    "decode-64": (64, 1, 32, 8, 128, True),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MODES = ("fwd", "bwd", "fwd+bwd")
HBM_PEAK_GBS = {"H100 NVL": 3900.0, "H100": 3350.0, "H200": 4800.0, "A100": 2039.0, "B200": 8000.0, "GB200": 8000.0}


def make_case(name: str, spec: tuple, dtype: torch.dtype, device: torch.device, layout: str = "half") -> Case:
    batch, seqlen, hq, hkv, d, scattered = spec
    positions = None
    if scattered:  # decode: one new token per sequence at scattered cache lengths
        gen = torch.Generator().manual_seed(1)
        positions = torch.randint(0, 32768, (batch, seqlen), generator=gen)
    return Case(name, batch, seqlen, hq, hkv, d, dtype, device, positions, layout)


class Timer:
    """Median seconds per call: wall clock on CPU, CUDA events with L2 flushed on GPU."""

    def __init__(self, device: torch.device, min_time: float, max_reps: int) -> None:
        self.device, self.min_time, self.max_reps = device, min_time, max_reps
        self.flush = None
        if device.type == "cuda":
            l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 << 20)
            self.flush = torch.empty(max(2 * l2, 256 << 20), dtype=torch.uint8, device=device)

    def __call__(self, fn, ref=None) -> tuple[float, float | None]:
        """Median of ``fn`` and, when given, of ``ref`` (the copy floor) timed alternately in the same
        window, so their ratio survives a noisy neighbour better than two separate medians."""
        fn()  # warm-up (compilation, first-touch)
        if ref is not None:
            ref()
        samples: list[float] = []
        ref_samples: list[float] = []
        start = time.perf_counter()
        while len(samples) < 3 or (time.perf_counter() - start < self.min_time and len(samples) < self.max_reps):
            if ref is not None:
                ref_samples.append(self._once(ref))
            samples.append(self._once(fn))
        return statistics.median(samples), (statistics.median(ref_samples) if ref_samples else None)

    def _once(self, fn) -> float:
        if self.flush is None:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        self.flush.zero_()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        return a.elapsed_time(b) / 1e3

    def graph(self, fn) -> float | None:
        """Device time of a CUDA-graph replay of ``fn`` (forward only), or None if not capturable."""
        if self.flush is None:
            return None
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                fn()
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                fn()
        except Exception:
            return None
        return self(g.replay)[0]


def peak_memory(fn, device: torch.device) -> int:
    """Bytes allocated at the peak of one call, above what existed before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    level = peak = 0
    for ev in sorted(prof.events(), key=lambda e: e.time_range.start):
        level += ev.self_cpu_memory_usage
        peak = max(peak, level)
    return peak


def runner(impl: Impl, mode: str):
    """A zero-argument callable for ``mode``, or raise Unsupported."""
    if mode == "fwd":
        return lambda: impl.fn(*impl.args)
    if not impl.differentiable:
        raise Unsupported("forward only (the floor for a backward is the forward's: same bytes)")
    if impl.inplace:
        raise Unsupported("in place: forward only (its backward is the out-of-place one)")
    q, k = (impl.args[0].detach().requires_grad_(), impl.args[1].detach().requires_grad_())
    args = (q, k, *impl.args[2:])
    out = [t for t in impl.fn(*args) if t is not None]
    if not all(t.requires_grad for t in out):
        raise Unsupported("no autograd")
    grads = [torch.randn_like(t) for t in out]
    if mode == "bwd":
        return lambda: torch.autograd.grad(out, (q, k), grads, retain_graph=True)
    return lambda: torch.autograd.grad([t for t in impl.fn(*args) if t is not None], (q, k), grads)


def hbm_peak(device: torch.device, override: float | None) -> float | None:
    if override or device.type != "cuda":
        return override
    name = torch.cuda.get_device_name(device)
    for key, gbs in HBM_PEAK_GBS.items():  # most specific names first
        if key in name:
            return gbs
    return None


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    shapes = QUICK if args.quick else SHAPES
    if args.shapes:
        shapes = {**SHAPES, **QUICK}
        shapes = {n: shapes[n] for n in args.shapes.split(",")}
    impls = args.impls.split(",") if args.impls else list(BUILDERS)
    modes = args.modes.split(",")
    timer = Timer(device, args.min_time, args.max_reps)
    samples: dict[tuple, list[float]] = {}
    ratios: dict[tuple, list[float]] = {}
    notes: dict[tuple, str] = {}
    memory: dict[tuple, int] = {}
    graph_ms: dict[tuple, float] = {}
    for rnd in range(args.rounds):
        for sname, spec in shapes.items():
            for dname in args.dtypes.split(","):
                case = make_case(sname, spec, DTYPES[dname], device, args.layout)
                floor_impl = BUILDERS["copy-floor"](case)
                floor_fn = runner(floor_impl, "fwd")
                for iname in impls:
                    try:
                        impl = BUILDERS[iname](case)
                    except Unsupported as exc:
                        notes[(sname, dname, iname)] = str(exc)
                        continue
                    for mode in modes:
                        key = (sname, dname, mode, iname)
                        try:
                            fn = runner(impl, mode)
                            t, t_floor = timer(fn, None if iname == "copy-floor" else floor_fn)
                            samples.setdefault(key, []).append(t)
                            ratios.setdefault(key, []).append(t / (t_floor or t) / (2 if mode == "fwd+bwd" else 1))
                            if rnd == 0:
                                memory[key] = peak_memory(fn, device)
                                if args.graphs and mode == "fwd":
                                    g = timer.graph(fn)
                                    if g is not None:
                                        graph_ms[key] = g * 1e3
                        except Unsupported as exc:
                            notes[key] = str(exc)
                        except Exception as exc:
                            notes[key] = f"error: {type(exc).__name__}: {exc}"[:120]
                        print(f"  round {rnd + 1} {sname} {dname} {mode} {iname}", file=sys.stderr, flush=True)
                del case
    peak = hbm_peak(device, args.hbm_peak_gbs)
    rows = []
    for key, ts in samples.items():
        sname, dname, mode, iname = key
        t = statistics.median(ts)
        spec = shapes[sname]
        nbytes = 2 * (spec[0] * spec[1] * (spec[2] + spec[3]) * spec[4]) * DTYPES[dname].itemsize
        nbytes *= 2 if mode == "fwd+bwd" else 1
        x_floor = statistics.median(ratios[key])
        gbs = nbytes / t / 1e9
        rows.append({
            "shape": sname, "dtype": dname, "mode": mode, "impl": iname, "ms": t * 1e3,
            "round_ms": [x * 1e3 for x in ts], "gb_s": gbs, "x_floor": x_floor,
            "pct_hbm_peak": 100 * gbs / peak if peak else None, "graph_ms": graph_ms.get(key),
            "peak_mem_mb": memory.get(key, 0) / 2**20,
        })
    for key, why in notes.items():
        rows.append({"shape": key[0], "dtype": key[1], "mode": key[2] if len(key) == 4 else "*",
                     "impl": key[-1], "note": why})
    return rows


def table(rows: list[dict]) -> str:
    head = f"{'shape':<15}{'dtype':<6}{'mode':<9}{'impl':<24}{'ms':>10}{'GB/s':>8}{'x floor':>9}{'%HBM':>6}" \
           f"{'graph ms':>10}{'peak MB':>9}"
    out = [head, "-" * len(head)]
    for r in rows:
        if "note" in r:
            continue
        pct = f"{r['pct_hbm_peak']:.0f}" if r["pct_hbm_peak"] else "-"
        xf = f"{r['x_floor']:.2f}" if r["x_floor"] else "-"
        gm = f"{r['graph_ms']:.4f}" if r["graph_ms"] else "-"
        out.append(f"{r['shape']:<15}{r['dtype']:<6}{r['mode']:<9}{r['impl']:<24}{r['ms']:>10.3f}{r['gb_s']:>8.1f}"
                   f"{xf:>9}{pct:>6}{gm:>10}{r['peak_mem_mb']:>9.1f}")
    skipped = sorted({(r["impl"], r["note"]) for r in rows if "note" in r})
    out += ["", "not run:"] + [f"  {i}: {n}" for i, n in skipped]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller shapes")
    p.add_argument("--shapes", help=f"comma list from {list(SHAPES) + list(QUICK)}")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--layout", default="half", choices=["half", "interleaved"])
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--impls", help=f"comma list from {list(BUILDERS)}")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians of round medians)")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds of samples per measurement")
    p.add_argument("--max-reps", type=int, default=50)
    p.add_argument("--graphs", action="store_true", help="also time forward CUDA-graph replays (GPU)")
    p.add_argument("--hbm-peak-gbs", type=float, help="HBM peak in GB/s if the GPU name is not known")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args)
    device = torch.device(args.device)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    meta = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "device": dev_name,
            "torch": torch.__version__, "argv": sys.argv[1:], "threads": torch.get_num_threads(),
            "layout": args.layout}
    print(f"# {meta['date']}  {dev_name}  torch {torch.__version__}  layout {args.layout}")
    print(table(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = meta["date"].replace(":", "").replace("+0000", "Z")
    path = out / f"bench_apply-{dev_name.replace(' ', '_')}-{stamp}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    os.replace(tmp, path)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
