"""Turn the per-run eval files into one results dict: perplexities with paired bootstrap 95% CIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ropekit.study.io import read_json
from ropekit.study.stats import bootstrap_indices, mean_over_seeds, ppl_ci, ratio_ci

__all__ = ["aggregate"]


def _load(cfg: Any, out: Path) -> dict[tuple[str, str, str], dict[int, dict[int, list[float]]]]:
    """``{(run name, variant, protocol): {seed: {context: per-unit NLL}}}`` for runs with every seed done."""
    table: dict[tuple[str, str, str], dict[int, dict[int, list[float]]]] = {}
    for name in cfg.encodings:
        for seed in cfg.seeds:
            saved = read_json(out / "runs" / f"{name}-seed{seed}" / "eval.json")
            for variant, protos in (saved or {}).get("variants", {}).items():
                for proto, per_ctx in protos.items():
                    table.setdefault((name, variant, proto), {})[seed] = {int(c): v for c, v in per_ctx.items()}
    return {k: v for k, v in table.items() if len(v) == len(cfg.seeds)}


def aggregate(cfg: Any, out: str | Path, *, n_heldout: int) -> dict[str, Any]:
    """Rows of ``{encoding, variant, protocol, context, multiple, ppl, lo, hi, seed_ppl, vs_1x, vs_rope, ...}``.

    ``ppl`` and its CI: seeds averaged per unit, units resampled. ``vs_1x``: the same configuration's
    ppl at C over its ppl at L (paired over units). ``vs_rope``: ppl over plain RoPE's at the same C.
    ``vs_nope``: ppl over NoPE's at the same C. ``vs_rope_same``: a scaled run over plain RoPE with the SAME
    eval-time scaling (e.g. rope-nope4+yarn over rope+yarn). One index set per protocol is shared by every
    configuration, so all ratios are paired.
    """
    import math

    out = Path(out)
    data = _load(cfg, out)
    n_units: dict[str, int] = {}
    for (_, _, proto), seeds in data.items():
        any_ctx = next(iter(next(iter(seeds.values())).values()))
        n_units[proto] = len(any_ctx)
    idx = {p: bootstrap_indices(n, cfg.n_boot, seed=1234) for p, n in n_units.items()}
    averaged: dict[tuple[str, str, str], dict[int, list[float]]] = {}

    def avg_of(key: tuple[str, str, str]) -> dict[int, list[float]] | None:
        if key not in data:
            return None
        if key not in averaged:
            seeds = data[key]
            averaged[key] = {c: mean_over_seeds({s: seeds[s][c] for s in seeds}) for c in next(iter(seeds.values()))}
        return averaged[key]

    rows: list[dict[str, Any]] = []
    for (name, variant, proto), seeds in sorted(data.items()):
        contexts = sorted(next(iter(seeds.values())))
        avg = avg_of((name, variant, proto))
        assert avg is not None
        # paired ratios to reference runs (a row is never compared with itself)
        refs = [("vs_rope", ("rope", "none", proto)), ("vs_nope", ("nope", "none", proto))]
        if variant != "none":
            refs.append(("vs_rope_same", ("rope", variant, proto)))
        base_c = min(contexts)
        for c in contexts:
            row: dict[str, Any] = {"encoding": name, "variant": variant, "protocol": proto, "context": c,
                                   "multiple": c / cfg.train_len, **ppl_ci(avg[c], idx[proto])}
            row["seed_ppl"] = [math.exp(sum(seeds[s][c]) / len(seeds[s][c])) for s in sorted(seeds)]
            row["vs_1x"] = ratio_ci(avg[c], avg[base_c], idx[proto])
            for key, ref in refs:
                ref_avg = avg_of(ref)
                if ref_avg is not None and ref != (name, variant, proto):
                    row[key] = ratio_ci(avg[c], ref_avg[c], idx[proto])
            rows.append(row)
    return {"rows": rows, "n_units": n_units, "contexts": list(cfg.contexts), "train_len": cfg.train_len,
            "seeds": list(cfg.seeds), "complete": sorted({f"{n}/{v}" for n, v, _ in data}),
            "n_heldout_tokens": n_heldout}
