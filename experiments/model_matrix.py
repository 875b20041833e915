"""Write docs/models.md: which HF causal-LM RoPE architectures ``ropekit.patch`` handles, measured.

    python experiments/model_matrix.py              # every type in the installed transformers (~3 min)
    python experiments/model_matrix.py llama qwen3  # a few

Each row comes from :func:`ropekit.patching.coverage.check_model_type` on a tiny random model.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("types", nargs="*", help="model types (default: every RoPE causal-LM type)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "models.md"))
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import transformers
    from tqdm.auto import tqdm

    from ropekit.eval.store import atomic_write_text
    from ropekit.patching.coverage import check_model_type
    from ropekit.patching.zoo import rope_model_types

    transformers.logging.set_verbosity_error()
    types = args.types or rope_model_types()
    results = [check_model_type(t) for t in tqdm(types, desc="model types")]
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "refused", "unbuildable", "fail")}
    lines = [
        "# Model coverage of `ropekit.patch`",
        "",
        f"Measured on transformers {transformers.__version__} by `python experiments/model_matrix.py` "
        "(tiny random models, fp32, no downloads). Every causal-LM model type whose modeling code has a "
        "`*RotaryEmbedding` module is listed.",
        "",
        f"**{counts['pass']} pass, {counts['refused']} refused (with the reason), {counts['unbuildable']} cannot "
        f"be built as a tiny random model here, {counts['fail']} silently wrong** (of {len(results)}).",
        "",
        "Checks: `own` = patched with its own RoPE, logits equal stock within 1e-5 of the logit scale; `generate` "
        "= greedy cached generation token-identical; `undo` = bit-identical after undo; `linear` / `yarn` = equal "
        "to HF's own model built with that scaling in its config (same weights); `per-type` = scaling one layer "
        "type only, where the config nests RoPE per layer type. `n/a` says why a check does not apply.",
        "",
        "| model type | status | path | own | generate | undo | linear | yarn | per-type | reason |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")[:160]

    for r in results:
        c = [cell(r.checks.get(k, "")) for k in ("own", "generate", "undo", "linear", "yarn", "per-type")]
        lines.append(f"| `{r.model_type}` | {r.status} | {r.path} | " + " | ".join(c) + f" | {cell(r.reason)} |")
    out = Path(args.out)
    atomic_write_text(out, "\n".join(lines) + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"transformers": transformers.__version__, "counts": counts, "results": [asdict(r) for r in results]},
        indent=1))
    print(json.dumps(counts))
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
