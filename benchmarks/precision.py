"""Measure ropekit's exactness and precision (not a test; prints a table and writes JSON).

For every config of the exactness grid (ropekit.testing.hf_grid): max relative error of inv_freq vs
transformers' ROPE_INIT_FUNCTIONS (fp32 in HF), attention factor difference, and the max absolute
cos/sin error vs a float64 reference at positions up to 2**20 — next to what fp32 angles would give.

    python benchmarks/precision.py [--out benchmarks/results/precision.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from ropekit import RopeConfig
from ropekit.testing.hf_grid import GRID, grid_config, hf_frequencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/precision.json")
    args = ap.parse_args()
    pos = torch.cat([torch.arange(4096), torch.arange(2**20 - 4096, 2**20)])
    rows = []
    for name, (_, seqs) in GRID.items():
        d = grid_config(name)
        cfg = RopeConfig.from_hf(d)
        for seq_len in seqs:
            ref_inv, ref_attn = hf_frequencies(d, seq_len)
            inv = cfg.inv_freq(seq_len)
            nz = ref_inv != 0
            rel = ((inv[nz] - ref_inv[nz].double()).abs() / ref_inv[nz].double().abs()).max().item()
            ang = pos.double()[:, None] * inv
            c, s = cfg.cos_sin(pos, seq_len=seq_len)
            a = cfg.attention_factor
            err = max((c.double() - ang.cos() * a).abs().max().item(), (s.double() - ang.sin() * a).abs().max().item())
            ang32 = pos.float()[:, None] * inv.float()
            err32 = (ang32.cos().double() * a - ang.cos() * a).abs().max().item()
            rows.append({"config": name, "method": cfg.method, "seq_len": seq_len, "inv_freq_max_rel_err_vs_hf": rel,
                         "attention_factor": a, "attention_factor_abs_diff_vs_hf": abs(a - float(ref_attn)),
                         "cos_sin_max_abs_err_vs_f64_to_2^20": err, "fp32_angles_err_for_comparison": err32})
    hdr = (f"{'config':<26}{'method':<13}{'seq_len':>8} {'inv rel err':>12} {'attn diff':>10} {'cos/sin err':>12} "
           f"{'fp32-angle err':>15}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['config']:<26}{r['method']:<13}{r['seq_len']!s:>8} {r['inv_freq_max_rel_err_vs_hf']:>12.2e} "
              f"{r['attention_factor_abs_diff_vs_hf']:>10.1e} {r['cos_sin_max_abs_err_vs_f64_to_2^20']:>12.2e} "
              f"{r['fp32_angles_err_for_comparison']:>15.2e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, out)
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
