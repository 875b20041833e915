"""Extend a model's context with RoPE scaling methods and measure it: perplexity by position + passkey.

Defaults: the bundled SmolLM2-135M (trained context L = 8192), methods none/linear/ntk/dynamic/yarn at
factor 2, one 2L-token window of Python standard-library source for perplexity by position bucket
(0-L/2, L/2-L, L-1.5L, 1.5L-2L), and passkey retrieval at 1.125L, 8 trials (random keys) per method with
the key at depth 0.98: greedy accuracy (Wilson 95%) and the teacher-forced log-probability of the key's
digits (bootstrap 95%). ``--text kjv`` scores prose instead (the King James Bible, Debian package
bible-kjv). Results go to OUT/results.json (resumable: rerun the same command to finish an interrupted
run), OUT/summary.json and OUT/eval.png.

A model with per-layer-type RoPE (``--model gemma3-270m``: 5 sliding layers per global one, L = 32768)
defaults to none, linear:full_attention (global layers only), linear (every layer) and
yarn:full_attention; ``--methods`` takes ``METHOD[@FACTOR][:LAYER_TYPE]`` (see :mod:`ropekit.eval.methods`).
Lengths whose estimated peak memory does not fit are refused before the model is loaded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ropekit.commands.args import floats as _floats
from ropekit.commands.args import ints as _ints
from ropekit.commands.args import names as _names

__all__ = ["add_arguments", "format_table", "plan_from_args", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m",
                        help="model name, HF model dir or .gguf (default: smollm2-135m)")
    parser.add_argument("--methods", type=_names, default=None,
                        help="comma-separated METHOD[@FACTOR][:LAYER_TYPE], METHOD one of none,linear,ntk,dynamic,"
                        "yarn,llama3,longrope; ':full_attention' scales only those layers of a hybrid model "
                        "(default: none,linear,ntk,dynamic,yarn; per-layer-type models: none,"
                        "linear:full_attention,linear,yarn:full_attention)")
    parser.add_argument("--factor", "--factors", dest="factors", type=_floats, default=None,
                        help="scaling factor(s), comma-separated (default: 2)")
    parser.add_argument("--length", "--lengths", dest="lengths", type=_ints, default=None,
                        help="perplexity window length(s) in tokens, e.g. 16384 or 16k (default: 2x trained context)")
    parser.add_argument("--windows", type=int, default=None, help="perplexity windows per length (default: 1)")
    parser.add_argument("--passkey-lengths", type=_ints, default=None,
                        help="passkey prompt lengths (default: 1.125x context)")
    parser.add_argument("--passkey-depths", type=_floats, default=None,
                        help="key depths in [0,1], the fraction of filler before the key (default: 0.98; a trial costs "
                        "the tokens after the key: 0.5 makes the default run ~30 min instead of ~12)")
    parser.add_argument("--passkey-trials", type=int, default=None,
                        help="trials (random keys) per method x length x depth (default: 8; 0 = skip)")
    parser.add_argument("--passkey-full", action="store_true",
                        help="prefill every passkey prompt whole instead of reusing the trials' shared prefix "
                        "(same scores to fp32 rounding except for length-dependent methods: dynamic, dynamic-yarn)")
    parser.add_argument("--text", default="stdlib",
                        help="'stdlib' (Python standard-library sources, offline everywhere), 'kjv' (prose: the King "
                        "James Bible; apt-get install bible-kjv), a file or a directory")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--out", default="ropekit-eval", help="output directory (default: ./ropekit-eval)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (a few minutes on 2 CPU cores for SmolLM2): none, yarn, self-extend, dca "
                        "(hybrid models: none, yarn:full_attention, yarn), one 1.125x-context window (4096 tokens "
                        "when the context is above 8k, which then stays inside it), short passkey")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


#: --quick: no scaling, a frequency scaling and two attention-level extensions (one grouped, one chunked)
QUICK_METHODS = ("none", "yarn", "self-extend", "dca")


def plan_from_args(args: argparse.Namespace) -> Any:
    """An :class:`~ropekit.eval.runner.EvalPlan` from parsed arguments (``--quick`` sets smaller defaults)."""
    from ropekit.eval.runner import EvalPlan

    plan = EvalPlan(model=args.model, text=args.text, device=args.device, out=args.out,
                    passkey_reuse=not args.passkey_full)
    if args.quick:
        plan.methods = QUICK_METHODS
        plan.extra["quick"] = True
    for name in ("methods", "factors", "lengths", "windows", "passkey_lengths", "passkey_depths", "passkey_trials"):
        value = getattr(args, name)
        if value is not None:
            setattr(plan, name, value)
    return plan


QUICK_MAX_CONTEXT = 8192  # above this, reaching past the context takes far longer than a smoke run may


def _quick_lengths(plan: Any, context: int, layered: bool = False) -> None:
    # --quick: the smallest window that still reaches past the trained context, and a short passkey;
    # a long-context model (Gemma 3: 32k, ~15 min per 36k window on 2 cores) gets a short in-context window
    if plan.lengths is None:
        plan.lengths = (context + context // 8,) if context <= QUICK_MAX_CONTEXT else (4096,)
    if plan.passkey_lengths is None:
        plan.passkey_lengths = (min(context // 4, QUICK_MAX_CONTEXT // 4),)
    if layered and plan.extra.get("quick") and tuple(plan.methods or ()) == QUICK_METHODS:
        plan.methods = ("none", "yarn:full_attention", "yarn")


def format_table(summary: dict[str, Any]) -> str:
    """Plain-text table: perplexity per bucket (95% CI) per window length, passkey accuracy per length."""
    methods = summary["methods"]
    w = max([14, *(len(label) + 2 for label in methods)])  # label column: 14 unless a label is longer
    lines = []
    lengths = sorted({int(n) for m in methods.values() for n in m["ppl"]})
    for n in lengths:
        buckets = next(m["ppl"][str(n)] for m in methods.values() if str(n) in m["ppl"])
        head = f"{'method':<{w}}" + "".join(f"{b['label']:>24}" for b in buckets)
        lines += [f"perplexity by position, {n}-token windows (x{buckets[0]['windows']}), 95% bootstrap CI", head]
        for label, m in methods.items():
            row = m["ppl"].get(str(n))
            if row is None:
                continue
            cells = "".join(f"{b['ppl']:>9.2f} [{b['lo95']:>6.1f},{b['hi95']:>7.1f}]" for b in row)
            lines.append(f"{label:<{w}}{cells}")
        lines.append("")
    keys = sorted({k for m in methods.values() for k in m["passkey"]}, key=lambda k: (int(k.split("|")[0]), k))
    if keys:
        lines.append("passkey retrieval, columns = length|depth: greedy accuracy (correct/trials, Wilson 95% CI)")
        lines.append(f"{'method':<{w}}" + "".join(f"{k:>24}" for k in keys))
        for label, m in methods.items():
            cells = ""
            for k in keys:
                c = m["passkey"].get(k)
                text = "-" if c is None else f"{c['correct']}/{c['trials']} [{c['lo95']:.2f},{c['hi95']:.2f}]"
                cells += text.rjust(24)
            lines.append(f"{label:<{w}}{cells}")
        lines.append("key log-probability under teacher forcing, nats per digit (mean over trials, bootstrap 95% CI)")
        for label, m in methods.items():
            cells = ""
            for k in keys:
                c = m["passkey"].get(k)
                text = "-" if c is None else (
                    f"{c['logprob_per_digit']:.3f} [{c['logprob_lo95']:.2f},{c['logprob_hi95']:.2f}]")
                cells += text.rjust(24)
            lines.append(f"{label:<{w}}{cells}")
    if any("peak_gib" in m for m in methods.values()):
        lines += ["", "cost per method: seconds (all cells) and peak memory (process RSS on CPU, allocation on CUDA)"]
        for label, m in methods.items():
            peak = f"{m['peak_gib']:.2f} GiB" if "peak_gib" in m else "-"
            lines.append(f"{label:<{w}}{m['seconds']:>10.0f} s{peak:>14}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ropekit.eval.runner import prepare, run_plan, summarize
    from ropekit.eval.store import atomic_write_text

    t0 = time.perf_counter()
    plan = plan_from_args(args)
    plan.validate()
    if args.quick:
        from ropekit.eval.methods import model_rope
        from ropekit.models import hf_config_of

        rope = model_rope(hf_config_of(plan.model))  # reads the config only
        _quick_lengths(plan, rope.context, rope.layered)
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
