"""Show a model's RoPE config, attention factor and per-frequency summary.

SOURCE is an HF config.json (or a model directory holding one), a GGUF file, or a model name known to
`ropekit.models` (e.g. smollm2-135m). --plot draws wavelength per pair against the contexts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "format_plan", "format_summary", "load_config", "load_plan", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE", help="config.json, model dir, .gguf, or a model name")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--plot", metavar="PNG", help="write a wavelength-per-pair plot")
    parser.add_argument("--seq-len", type=int, default=None, help="regime for length-dependent methods")
    parser.add_argument("--layer-type", default=None, help="per-layer-type RoPE entry (e.g. full_attention)")


def _is_path(source: str) -> bool:
    """A path on disk, or what can only be meant as one (a missing file gets the loader's error)."""
    return Path(source).exists() or Path(source).suffix in (".json", ".gguf") or "/" in source


def load_config(source: str, layer_type: str | None = None) -> Any:
    """RopeConfig from a config.json / model dir / GGUF path (:func:`ropekit.interop.load_rope_config`)
    or a known model name (:func:`ropekit.models.rope_config_of`)."""
    if _is_path(source):
        from ropekit.interop.loader import load_rope_config

        return load_rope_config(source, layer_type=layer_type)
    from ropekit import models  # a model name, e.g. smollm2-135m

    return models.rope_config_of(source)


def load_plan(source: str) -> Any:
    """The whole-model RopePlan of an HF source (config.json, model dir, model name); None for GGUF files."""
    if _is_path(source):
        from ropekit.interop.loader import load_rope_plan

        return load_rope_plan(source)
    from ropekit.core.plan import RopePlan
    from ropekit.models import hf_config_of

    return RopePlan.from_hf(hf_config_of(source))


def format_plan(plan: Any) -> str:
    """One row per layer type: which layers, and their RoPE (or NoPE)."""
    lines = [f"{'layer type':<20} {'layers':<24} {'rope':<60}"]
    for r in plan.describe():
        layers = r["layers"]
        shown = ",".join(map(str, layers)) if len(layers) <= 8 else f"{len(layers)} layers ({layers[0]}..{layers[-1]})"
        rope = r["rope"]
        if rope is None:
            what = "NoPE"
        else:
            what = (f"{rope['method']} base={rope['base']:g} rotary_dim={rope['rotary_dim']}/{rope['head_dim']} "
                    f"layout={rope['layout']} attn_factor={rope['attention_factor']:.4g}")
            if r["nope_layers"]:
                what += f"; NoPE layers {r['nope_layers']}"
        lines.append(f"{r['layer_type']:<20} {shown:<24} {what}")
    return "\n".join(lines)


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"method             {s['method']}",
        f"head_dim / rotary  {s['head_dim']} / {s['rotary_dim']} ({s['rotary_pairs']} pairs), layout={s['layout']}",
        f"base               {s['base']:g}",
        f"attention factor   {s['attention_factor']:.6g}  (multiplies cos and sin; logits scale by its square)",
        f"original context   {s['original_context']}",
        f"extended context   {s['extended_context']}",
    ]
    if s["scaling"]:
        params = ", ".join(f"{k}={v}" for k, v in s["scaling"].items() if k != "method" and not isinstance(v, tuple))
        lines.append(f"scaling params     {params}")
    if s["pairs_full_turn_in_context"] is not None:
        lines.append(
            f"full turn in ctx   {s['pairs_full_turn_in_context']} of {s['rotary_pairs']} pairs complete a full "
            f"turn within {s['original_context']} tokens"
        )
    lines.append(f"changed by scaling {len(s['pairs_changed'])} of {s['rotary_pairs']} pairs")
    lines.append("")
    lines.append(f"{'pair':>4} {'wavelength':>12} {'scaled wl':>12} {'freq ratio':>10}  note")
    L0 = s["original_context"]
    for p in s["pairs"]:
        note = []
        if L0 and p["wavelength_unscaled"] <= L0:
            note.append("turns within ctx")
        if abs(p["ratio"] - 1) > 1e-9:
            note.append(f"scaled x{p['ratio']:.4g}")
        lines.append(
            f"{p['pair']:>4} {p['wavelength_unscaled']:>12.5g} {p['wavelength']:>12.5g} {p['ratio']:>10.4g}  "
            + ", ".join(note)
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ropekit.summary import frequency_summary

    try:
        plan = load_plan(args.source) if args.layer_type is None else None
    except ValueError:
        plan = None  # no whole-model reading (e.g. no layer count): the single-config path says what is wrong
    if plan is not None and (not plan.is_uniform or plan.nope_layers or len(plan.types) > 1):
        return _run_plan(args, plan)
    cfg = load_config(args.source, args.layer_type)
    summary = frequency_summary(cfg, seq_len=args.seq_len)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(repr(cfg))
        print(format_summary(summary))
    if args.plot:
        from ropekit.plots import plot_wavelengths

        out = plot_wavelengths(summary, args.plot)
        if not args.json:
            print(f"\nplot written to {out}")
    return 0


def _run_plan(args: argparse.Namespace, plan: Any) -> int:
    """A per-layer-type model: the plan table, then each rotating type's frequency summary."""
    from ropekit.summary import frequency_summary

    summaries = {t: frequency_summary(plan.by_type[t], seq_len=args.seq_len) for t in plan.rope_types}
    if args.json:
        print(json.dumps({"plan": plan.describe(), "types": summaries}, indent=2, default=str))
    else:
        print(format_plan(plan))
        for t, summary in summaries.items():
            print(f"\n== layer type {t} ==")
            print(repr(plan.by_type[t]))
            print(format_summary(summary))
    if args.plot:
        from ropekit.plots import plot_wavelengths

        first = plan.rope_types[-1]  # the global / full-attention type in HF's ordering, usually
        out = plot_wavelengths(summaries[first], args.plot)
        if not args.json:
            print(f"\nplot written to {out} (layer type {first}; --layer-type picks another)")
    return 0
