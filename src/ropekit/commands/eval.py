"""Extend a model's context with RoPE scaling methods and measure it: perplexity by position + passkey.

Defaults: the bundled SmolLM2-135M (trained context L = 8192), methods none/linear/ntk/dynamic/yarn at
factor 2, one 2L-token window of Python standard-library source for perplexity by position bucket
(0-L/2, L/2-L, L-1.5L, 1.5L-2L), and passkey retrieval at 1.25L. Results go to OUT/results.json
(resumable: rerun the same command to finish an interrupted run), OUT/summary.json and OUT/eval.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "format_table", "plan_from_args", "run"]


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    out = []
    for x in text.split(","):
        x = x.strip().lower()
        if not x:
            continue
        try:
            out.append(int(float(x[:-1]) * 1024) if x.endswith("k") else int(x))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated token counts (e.g. 16384,8k), got {text!r}"
            ) from None
    return tuple(out)


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m",
                        help="model name, HF model dir or .gguf (default: smollm2-135m)")
    parser.add_argument("--methods", type=_names, default=None,
                        help="comma-separated: none,linear,ntk,dynamic,yarn,llama3,longrope "
                        "(default: none,linear,ntk,dynamic,yarn)")
    parser.add_argument("--factor", "--factors", dest="factors", type=_floats, default=None,
                        help="scaling factor(s), comma-separated (default: 2)")
    parser.add_argument("--length", "--lengths", dest="lengths", type=_ints, default=None,
                        help="perplexity window length(s) in tokens, e.g. 16384 or 16k (default: 2x trained context)")
    parser.add_argument("--windows", type=int, default=None, help="perplexity windows per length (default: 1)")
    parser.add_argument("--passkey-lengths", type=_ints, default=None,
                        help="passkey prompt lengths (default: 1.25x context)")
    parser.add_argument("--passkey-depths", type=_floats, default=None, help="key depths in [0,1] (default: 0.5)")
    parser.add_argument("--passkey-trials", type=int, default=None,
                        help="trials per length x depth (default: 1; 0 = skip)")
    parser.add_argument("--text", default="stdlib",
                        help="'stdlib' (Python standard-library sources, offline everywhere), a file or a directory")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--out", default="ropekit-eval", help="output directory (default: ./ropekit-eval)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (<= 3 min on 2 CPU cores): none+yarn, one 1.125x-context window, short passkey")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def plan_from_args(args: argparse.Namespace) -> Any:
    """An :class:`~ropekit.eval.runner.EvalPlan` from parsed arguments (``--quick`` sets smaller defaults)."""
    from ropekit.eval.runner import EvalPlan

    plan = EvalPlan(model=args.model, text=args.text, device=args.device, out=args.out)
    if args.quick:
        plan.methods = ("none", "yarn")
        plan.extra["quick"] = True
    for name in ("methods", "factors", "lengths", "windows", "passkey_lengths", "passkey_depths", "passkey_trials"):
        value = getattr(args, name)
        if value is not None:
            setattr(plan, name, value)
    return plan


def _quick_lengths(plan: Any, context: int) -> None:
    # --quick: the smallest window that still reaches past the trained context, and a short passkey
    if plan.lengths is None:
        plan.lengths = (context + context // 8,)
    if plan.passkey_lengths is None:
        plan.passkey_lengths = (context // 4,)


def format_table(summary: dict[str, Any]) -> str:
    """Plain-text table: perplexity per bucket (95% CI) per window length, passkey accuracy per length."""
    methods = summary["methods"]
    lines = []
    lengths = sorted({int(n) for m in methods.values() for n in m["ppl"]})
    for n in lengths:
        buckets = next(m["ppl"][str(n)] for m in methods.values() if str(n) in m["ppl"])
        head = f"{'method':<14}" + "".join(f"{b['label']:>24}" for b in buckets)
        lines += [f"perplexity by position, {n}-token windows (x{buckets[0]['windows']}), 95% bootstrap CI", head]
        for label, m in methods.items():
            row = m["ppl"].get(str(n))
            if row is None:
                continue
            cells = "".join(f"{b['ppl']:>9.2f} [{b['lo95']:>6.1f},{b['hi95']:>7.1f}]" for b in row)
            lines.append(f"{label:<14}{cells}")
        lines.append("")
    keys = sorted({k for m in methods.values() for k in m["passkey"]}, key=lambda k: (int(k.split("|")[0]), k))
    if keys:
        lines.append("passkey retrieval accuracy (correct/trials, Wilson 95% CI), columns = length|depth")
        lines.append(f"{'method':<14}" + "".join(f"{k:>22}" for k in keys))
        for label, m in methods.items():
            cells = ""
            for k in keys:
                c = m["passkey"].get(k)
                text = "-" if c is None else f"{c['correct']}/{c['trials']} [{c['lo95']:.2f},{c['hi95']:.2f}]"
                cells += text.rjust(22)
            lines.append(f"{label:<14}{cells}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ropekit.eval.runner import prepare, run_plan, summarize
    from ropekit.eval.store import atomic_write_text

    t0 = time.perf_counter()
    plan = plan_from_args(args)
    plan.validate()
    if args.quick:
        from ropekit.models import rope_config_of

        own = rope_config_of(plan.model)  # reads the config only
        _quick_lengths(plan, own.original_max_position_embeddings or 2048)
    prepared = prepare(plan)
    store = run_plan(prepared, progress=not args.no_progress)
    summary = summarize(prepared, store)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(plan.out)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(format_table(summary))
    if not args.no_plot:
        from ropekit.plots import plot_eval

        plot_eval(summary, out / "eval.png")
    files = [out / "results.json", out / "summary.json"] + ([] if args.no_plot else [out / "eval.png"])
    print("\nresults: " + ", ".join(map(str, files)))
    print(f"wall time {summary['wall_seconds']:.0f} s (cells already done are skipped on rerun)")
    return 0
