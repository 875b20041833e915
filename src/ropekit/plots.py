"""All plotting lives here (the only matplotlib import in ropekit). Each function writes one PNG.

matplotlib is an optional dependency (``pip install ropekit[plot]``); it is imported inside the
functions, with the non-interactive Agg backend, so importing ropekit never needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ropekit.io import atomic_write

__all__ = ["plot_eval", "plot_study", "plot_wavelengths"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'ropekit[plot]'") from exc
    return plt


def _save(plt: Any, fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` atomically (a killed run never leaves half a PNG)."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


# -- inspect: wavelength per pair ----------------------------------------------------------------------
def plot_wavelengths(summary: dict[str, Any], path: str | Path) -> Path:
    """Wavelength (tokens per turn, log scale) per rotary pair before and after scaling, against the
    original and extended context. ``summary`` comes from :func:`ropekit.summary.frequency_summary`."""
    plt = _pyplot()
    pairs = summary["pairs"]
    idx = [p["pair"] for p in pairs]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(idx, [p["wavelength_unscaled"] for p in pairs], "o-", ms=3, label="unscaled")
    if summary["method"] != "default":
        ax.plot(idx, [p["wavelength"] for p in pairs], "s-", ms=3, label=f"scaled ({summary['method']})")
    if summary.get("original_context"):
        ax.axhline(summary["original_context"], color="k", ls="--", lw=1,
                   label=f"original context {summary['original_context']}")
    ext = summary.get("extended_context")
    if ext and ext != summary.get("original_context"):
        ax.axhline(ext, color="tab:red", ls=":", lw=1.2, label=f"extended context {ext}")
    ax.set_yscale("log")
    ax.set_xlabel("rotary pair i")
    ax.set_ylabel("wavelength 2π/θᵢ (tokens)")
    ax.set_title(f"RoPE wavelengths: d={summary['rotary_dim']}, base={summary['base']:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, path, dpi=120)


# -- study: train short, test long (ropekit.study) -----------------------------------------------------


def plot_study(results: dict[str, Any], path: str | Path) -> Path:
    """Train short, test long: one column per protocol. Top: perplexity vs evaluation context (multiples of
    the training length L) with 95% CIs; bottom: the paired ratio to the same model at 1x with its 95% CI
    (the CIs that matter: windows are shared, so between-window spread cancels). Dashed: RoPE scaled at
    inference. ``results`` comes from :func:`ropekit.study.aggregate.aggregate`. Written atomically."""

    plt = _pyplot()
    from matplotlib import ticker

    titles = {"same_target": "same target tokens", "nonoverlap": "non-overlapping", "sliding": "sliding window"}
    protos = [p for p in titles if any(r["protocol"] == p for r in results["rows"])]
    labels: list[str] = []
    for r in results["rows"]:
        label = r["encoding"] if r["variant"] == "none" else f"{r['encoding']}+{r['variant']}"
        if label not in labels:
            labels.append(label)
    # one distinct colour per line: tab10 up to 10 lines, tab20 beyond (a repeated colour misreads as one model)
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colors = {label: cmap(i % cmap.N) for i, label in enumerate(labels)}
    fig, axes = plt.subplots(2, len(protos), figsize=(5.0 * len(protos) + 1.6, 7.6), squeeze=False, sharex=True)
    for col, proto in enumerate(protos):
        series: dict[str, list[dict[str, Any]]] = {}
        for r in results["rows"]:
            if r["protocol"] == proto:
                label = r["encoding"] if r["variant"] == "none" else f"{r['encoding']}+{r['variant']}"
                series.setdefault(label, []).append(r)
        for label, rows in series.items():
            rows = sorted(rows, key=lambda r: r["context"])
            x = [r["multiple"] for r in rows]
            style = dict(color=colors[label], ls="--" if "+" in label else "-", marker="o", ms=3, label=label)
            top, bottom = axes[0][col], axes[1][col]
            top.errorbar(x, [r["ppl"] for r in rows], capsize=2, lw=1.2, **style,
                         yerr=[[r["ppl"] - r["lo"] for r in rows], [r["hi"] - r["ppl"] for r in rows]])
            bottom.plot(x, [r["vs_1x"]["ratio"] for r in rows], **style)
            bottom.fill_between(x, [r["vs_1x"]["lo"] for r in rows], [r["vs_1x"]["hi"] for r in rows],
                                color=colors[label], alpha=0.15)
        axes[0][col].set_title(titles[proto])
        axes[0][col].set_ylabel("perplexity (bytes)")
        axes[1][col].set_ylabel("ppl / ppl at 1x (paired)")
        axes[1][col].set_xlabel(f"evaluation context / training length L={results['train_len']}")
        axes[1][col].axhline(1, color="k", lw=0.8, ls=":")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
            ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%.3g"))
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%gx"))
            ax.grid(True, which="both", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="center right")
    fig.suptitle(f"Train at L={results['train_len']}, test longer (seeds {results['seeds']}, 95% paired bootstrap CIs)")
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / (5.0 * len(protos) + 1.6), 1))
    return _save(plt, fig, path)


# -- eval: perplexity by position and passkey heatmap (ropekit.eval, `ropekit eval`) --------------------


def plot_eval(summary: dict[str, Any], path: str | Path) -> Path:
    """Left: perplexity per position bucket (log scale, 95% bootstrap CI band), one line per method, the
    trained context L marked. Right: passkey accuracy heatmap (method x length|depth), each cell annotated with
    correct/trials and the mean teacher-forced key log-probability (nats per digit). ``summary`` comes
    from :func:`ropekit.eval.runner.summarize`. Written atomically (tmp + replace)."""

    plt = _pyplot()
    methods = summary["methods"]
    keys = sorted({k for m in methods.values() for k in m["passkey"]}, key=lambda k: (int(k.split("|")[0]), k))
    ncols = 2 if keys else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.4 * ncols, 4.6), squeeze=False)
    ax = axes[0][0]
    L = summary["context"]
    for label, m in methods.items():
        for n, buckets in sorted(m["ppl"].items(), key=lambda kv: int(kv[0])):
            x = [(b["lo"] + b["hi"]) / 2 / L for b in buckets]
            suffix = "" if len(m["ppl"]) == 1 else f" ({n})"
            (line,) = ax.plot(x, [b["ppl"] for b in buckets], marker="o", ms=4, label=label + suffix)
            ax.fill_between(x, [b["lo95"] for b in buckets], [b["hi95"] for b in buckets],
                            color=line.get_color(), alpha=0.15)
    ax.axvline(1.0, color="k", ls="--", lw=1, label=f"trained context L={L}")
    ax.set_yscale("log")
    ax.set_xlabel("target position / L (bucket centre)")
    ax.set_ylabel("perplexity")
    ax.set_title(f"{summary['model']}: perplexity by position")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if keys:
        ax2 = axes[0][1]
        labels = list(methods)
        grid = [[methods[lab]["passkey"].get(k, {}).get("accuracy", float("nan")) for k in keys] for lab in labels]
        im = ax2.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax2.set_xticks(range(len(keys)), [k.replace("|", "\ndepth ") for k in keys], fontsize=7)
        ax2.set_yticks(range(len(labels)), labels, fontsize=8)
        for i, lab in enumerate(labels):
            for j, k in enumerate(keys):
                c = methods[lab]["passkey"].get(k)
                if c is not None:  # accuracy, and the continuous score that separates methods with equal counts
                    lp = f"\n{c['logprob_per_digit']:.2f}" if "logprob_per_digit" in c else ""
                    ax2.text(j, i, f"{c['correct']}/{c['trials']}{lp}", ha="center", va="center", fontsize=8,
                             color="white" if c["accuracy"] > 0.8 or c["accuracy"] < 0.2 else "black")
        ax2.set_title("passkey accuracy (length, depth)\nbelow: key log-prob, nats/digit, mean of trials", fontsize=9)
        fig.colorbar(im, ax=ax2, fraction=0.046)
    fig.tight_layout()
    return _save(plt, fig, path)
