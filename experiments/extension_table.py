"""Markdown tables for experiments/LOG.md from `ropekit eval` output folders (issue 12 part 3).

    python experiments/extension_table.py experiments/eval-smollm2-16k experiments/eval-smollm2-32k

Per folder: perplexity by position bucket (95% CI), passkey (greedy correct/trials with Wilson 95% CI and the
mean teacher-forced log-probability per key digit with its bootstrap 95% CI), seconds and peak RSS
(process, weights included) per method, read from results.json (every finished cell; an interrupted run
shows what it has).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from ropekit.eval.perplexity import summarize_perplexity
from ropekit.eval.stats import bootstrap_mean, wilson_interval


def paired_ratio(a: dict, b: dict, bucket: int, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Perplexity ratio a / b on one bucket of the same window (same 256-token blocks), paired block
    bootstrap 95% CI: blocks are resampled jointly, so the shared difficulty of the text cancels."""
    sa, sb = (torch.tensor(r["buckets"][bucket]["sums"], dtype=torch.float64) for r in (a, b))
    c = torch.tensor(a["buckets"][bucket]["counts"], dtype=torch.float64)
    if a["sha"] != b["sha"] or a["buckets"][bucket]["counts"] != b["buckets"][bucket]["counts"]:
        raise ValueError("the two records do not score the same tokens.")
    idx = torch.randint(0, c.numel(), (n_boot, c.numel()), generator=torch.Generator().manual_seed(seed))
    boot = ((sa[idx].sum(1) - sb[idx].sum(1)) / c[idx].sum(1)).exp()
    q = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return math.exp(float((sa.sum() - sb.sum()) / c.sum())), float(q[0]), float(q[1])


#: row order when the folder was filled by several runs (summary.json then names only the last run's methods)
FAMILIES = ("none", "linear", "ntk", "dynamic", "yarn", "self-extend", "dca", "rerope", "leaky-rerope", "dynamic-yarn")


def _ordered(folder: Path, labels: dict) -> list:
    """``labels.items()`` in the command's method order (summary.json) when it names them all, else by family."""
    summary = folder / "summary.json"
    order = list(json.loads(summary.read_text())["methods"]) if summary.exists() else []
    if not set(labels) <= set(order):
        def family(label: str) -> int:
            base = label.split("@")[0]
            return FAMILIES.index(base) if base in FAMILIES else len(FAMILIES)

        order = sorted(labels, key=lambda lb: (family(lb), lb))
    return sorted(labels.items(), key=lambda kv: order.index(kv[0]))


def ratios(folder: Path, against: str) -> str:
    """Each method's perplexity / ``against``'s per bucket (window 0), paired 95% CI."""
    cells = json.loads((folder / "results.json").read_text())["cells"]
    ppl = {k.split("|")[1]: v for k, v in cells.items() if k.startswith("ppl|") and k.endswith("|w0")}
    ref = ppl[against]
    labels = [f"{b['lo'] // 1024}k-{b['hi'] // 1024}k" for b in ref["buckets"]]
    rows = []
    for label, rec in _ordered(folder, ppl):
        cols = [paired_ratio(rec, ref, i) for i in range(len(labels))]
        rows.append(f"| {label} | " + " | ".join(f"{r:.3f} [{lo:.3f}, {hi:.3f}]" for r, lo, hi in cols) + " |")
    return (f"| perplexity / {against} | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels) + "\n"
            + "\n".join(rows))


def table(folder: Path) -> str:
    cells = json.loads((folder / "results.json").read_text())["cells"]
    methods: dict[str, dict] = {}
    for key, rec in cells.items():
        kind, label = key.split("|")[:2]
        m = methods.setdefault(label, {"ppl": [], "pk": [], "ppl_s": 0.0, "peak": 0.0})
        if kind == "ppl":
            m["peak"] = max(m["peak"], rec.get("peak_gib") or 0.0)
            m["ppl"].append(rec)
            m["ppl_s"] += rec.get("seconds", 0.0)
        else:
            m["pk"].append(rec)
            m["pk_peak"] = max(m.get("pk_peak", 0.0), rec.get("peak_gib") or 0.0)
    rows, head = [], None
    for label, m in _ordered(folder, methods):
        buckets = summarize_perplexity(m["ppl"]) if m["ppl"] else []
        head = head or [b["label"] for b in buckets]
        ppl = [f"{b['ppl']:.2f} [{b['lo95']:.2f}, {b['hi95']:.2f}]" for b in buckets]
        if m["pk"]:
            n, ok = len(m["pk"]), sum(bool(r["correct"]) for r in m["pk"])
            lo, hi = wilson_interval(ok, n)
            mean, lo2, hi2 = bootstrap_mean([r["key_logprob_per_digit"] for r in m["pk"]])
            pk = f"{ok}/{n} [{lo:.2f}, {hi:.2f}]", f"{mean:.2f} [{lo2:.2f}, {hi2:.2f}]"
            pk_s = sum(r["seconds"] + r.get("prefix_seconds", 0.0) for r in m["pk"])  # trials + the shared prefix
        else:
            pk, pk_s = ("not run", "not run"), 0.0
        rows.append(f"| {label} | " + " | ".join(ppl or ["not run"]) + f" | {pk[0]} | {pk[1]} | {m['ppl_s']:.0f} | "
                    f"{pk_s:.0f} | {m['peak']:.2f} | {m.get('pk_peak', float('nan')):.2f} |")
    cols = " | ".join(head or ["perplexity"])
    return (f"| method | {cols} | passkey greedy | key log-prob / digit | ppl s | passkey s | ppl peak GiB "
            "| passkey peak GiB |\n"
            f"|---|{'---|' * len(head or [1])}---|---|---|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        folder = Path(arg)
        print(f"\n{arg}\n\n{table(folder)}")
        cells = json.loads((folder / "results.json").read_text())["cells"]
        against = next((k.split("|")[1] for k in cells if k.startswith("ppl|yarn@")), None)
        if against:
            print(f"\n{ratios(folder, against)}")
