"""Write a study's results: ``results.json``, a Markdown table ``results.md`` and the plot ``study.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ropekit.io import atomic_write_text
from ropekit.study.io import write_json

__all__ = ["PLOTTED_VARIANTS", "format_tables", "write_reports"]

#: eval variants drawn in study.png: plain, the best-known scaling and one training-free extension
PLOTTED_VARIANTS: tuple[str, ...] = ("none", "yarn", "self-extend")

_PROTO_TITLES = {
    "same_target": "Same target tokens (last T tokens of each window; context grows)",
    "nonoverlap": "Non-overlapping chunks of length C (every token scored)",
    "sliding": "Sliding window (window C, stride S; same targets at every C)",
}


#: paired-ratio columns of the aggregated rows -> the heading of their table
_VS = {
    "vs_rope": "Ratio to plain RoPE at the same context (paired, [95% CI]; < 1 is better than RoPE):",
    "vs_rope_same": "Ratio to RoPE with the same inference-time scaling (paired, [95% CI]; < 1 is better):",
    "vs_nope": "Ratio to NoPE at the same context (paired, [95% CI]; < 1 is better than NoPE):",
}


def _label(row: dict[str, Any]) -> str:
    return row["encoding"] if row["variant"] == "none" else f"{row['encoding']}+{row['variant']}"


def _order(row: dict[str, Any]) -> tuple[int, int]:
    from ropekit.study.encodings import EVAL_SCALINGS
    from ropekit.study.extensions import EXTENSION_VARIANTS
    from ropekit.study.runner import RUN_NAMES

    enc, var = row["encoding"], row["variant"]
    variants = (*EVAL_SCALINGS, *EXTENSION_VARIANTS)
    return (RUN_NAMES.index(enc) if enc in RUN_NAMES else 99, variants.index(var) if var in variants else 99)


def _ratio(d: dict[str, float]) -> str:
    return f"{d['ratio']:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]"


def _table(rows: list[dict[str, Any]], contexts: list[int], train_len: int, cell) -> list[str]:
    head = "| encoding | " + " | ".join(f"{c} ({c // train_len}x)" for c in contexts) + " |"
    lines = [head, "|---|" + "---|" * len(contexts)]
    by_label: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by_label.setdefault(_label(r), {})[r["context"]] = r
    for label, per in sorted(by_label.items(), key=lambda kv: _order(next(iter(kv[1].values())))):
        lines.append(f"| {label} | " + " | ".join(cell(per[c]) if c in per else "–" for c in contexts) + " |")
    return lines


def format_tables(results: dict[str, Any]) -> str:
    """Markdown: per protocol, ppl [95% CI] and the paired ratio to the same model at 1x."""
    contexts, L = results["contexts"], results["train_len"]
    out: list[str] = []
    for proto, title in _PROTO_TITLES.items():
        rows = [r for r in results["rows"] if r["protocol"] == proto]
        if not rows:
            continue
        n = results["n_units"][proto]
        out += [f"### {title}", "", f"Perplexity (byte-level), seeds {results['seeds']} averaged per unit; "
                f"[95% CI] paired bootstrap over {n} units. Seed range in parentheses.", ""]
        out += _table(rows, contexts, L, lambda r: f"{r['ppl']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] "
                      f"({min(r['seed_ppl']):.2f}–{max(r['seed_ppl']):.2f})")
        out += ["", "Ratio to the same configuration at 1x (paired, [95% CI]):", ""]
        out += _table(rows, contexts, L, lambda r: _ratio(r["vs_1x"]))
        for key, text in _VS.items():
            vs = [r for r in rows if key in r]
            if vs:
                out += ["", text, ""]
                out += _table(vs, contexts, L, lambda r, key=key: _ratio(r[key]))
        out.append("")
    return "\n".join(out)


def write_reports(results: dict[str, Any], out_dir: str | Path) -> None:
    """``results.json`` + ``results.md`` (+ ``study.png`` of :data:`PLOTTED_VARIANTS` when matplotlib is
    available), all atomic."""

    out = Path(out_dir)
    write_json(results, out / "results.json")
    atomic_write_text(out / "results.md", format_tables(results))
    try:
        from ropekit.plots import plot_study
    except ImportError:  # pragma: no cover - plots.py without the study section
        return
    # every row in the tables, but only a few variants in the plot: with all ~30 lines colours repeat
    plotted = {**results, "rows": [r for r in results["rows"] if r["variant"] in PLOTTED_VARIANTS]}
    try:
        plot_study(plotted, out / "study.png")
    except ImportError:  # matplotlib missing: tables are still written
        pass
