"""Train small LMs at length L with each position encoding and measure perplexity at 1x-8x L.

Trains NoPE / learned / sinusoidal / ALiBi / RoPE / rope-nope4 (RoPE with every 4th layer NoPE, as in
SmolLM3 and Llama-4; the last layer when there are fewer than 4) and optionally p-RoPE decoder LMs on
Python standard-library sources (byte tokens, held-out split by file), evaluates them at 1x, 2x, 4x, 8x
the training length on the same target tokens (plus non-overlapping and sliding-window perplexity), and
RoPE (and the hybrid's RoPE layers) with PI / NTK / dynamic NTK / YaRN applied at evaluation time, and
with the training-free Self-Extend / DCA / ReRoPE / leaky ReRoPE / dynamic YaRN of ropekit.extension.
Seeds, paired bootstrap 95% CIs, results.json + results.md + study.png in --out.
Resumable: rerun the same command to continue.

Examples:
  ropekit study --quick --out study-quick                 # ~5 min on 2 CPU cores
  ropekit study --out study-full                          # 6 encodings x 3 seeds
  torchrun --nproc_per_node 2 -m ropekit study --quick --out study-ddp   # same trainer under DDP
"""

from __future__ import annotations

import argparse

from ropekit.commands.args import ints as _ints
from ropekit.commands.args import names as _names

__all__ = ["QUICK", "add_arguments", "config_from_args", "main", "run"]

#: overrides for --quick (everything else as in the full default)
QUICK: dict[str, object] = {
    "seeds": (0,), "d_model": 64, "n_layers": 2, "steps": 120, "warmup": 12, "n_windows": 32, "n_blocks": 4,
    "n_regions": 4, "scaled_protocols": ("same_target",),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ropekit study`` (unset ones take the full default, or the --quick preset)."""
    a = parser.add_argument
    a("--quick", action="store_true", help="small preset: 1 seed, tiny model, ~5 min on 2 cores")
    a("--out", default="ropekit-study", help="output folder (resumes what is already there)")
    a("--encodings", type=_names, help="comma list from nope,learned,sinusoidal,alibi,rope,rope-nope4,p-rope")
    a("--seeds", type=_ints, help="comma list of seeds (default 0,1,2)")
    a("--train-len", type=int, dest="train_len", help="training length L (default 128)")
    a("--multiples", type=_ints, help="evaluation contexts as multiples of L (default 1,2,4,8)")
    a("--scalings", type=_names, help="eval-time RoPE scalings from linear,ntk,dynamic,yarn ('' for none)")
    a("--extensions", type=_names, help="training-free methods for the full-RoPE runs from self-extend,dca,rerope,"
      "leaky-rerope,dynamic-yarn ('' for none; default all)")
    a("--scale-factor", type=float, dest="scale_factor", help="fixed scaling factor (default: C/L per context)")
    a("--p-rope", type=float, dest="p_rope", help="fraction of highest frequencies p-RoPE keeps (default 0.75)")
    a("--steps", type=int, help="training steps per run")
    a("--batch-size", type=int, dest="batch_size", help="GLOBAL batch size (split over torchrun ranks)")
    a("--lr", type=float, help="peak learning rate")
    a("--d-model", type=int, dest="d_model", help="model width")
    a("--layers", type=int, dest="n_layers", help="number of layers")
    a("--heads", type=int, dest="n_heads", help="attention heads")
    a("--kv-heads", type=int, dest="n_kv_heads", help="key/value heads (GQA when < heads)")
    a("--windows", type=int, dest="n_windows", help="same-target windows")
    a("--target", type=int, help="target tokens scored per same-target window (default 32)")
    a("--root", help="corpus folder of .py files (default: this Python's stdlib)")
    a("--device", default="auto", help="auto (CUDA if available), cpu, cuda, ...")
    a("--threads", type=int, help="torch CPU threads per process (1 is fastest on a CPU shared with other jobs)")
    a("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace):  # -> StudyConfig
    """Full defaults, then the --quick preset, then every option given explicitly."""
    from ropekit.study.runner import StudyConfig

    values: dict[str, object] = dict(QUICK) if args.quick else {}
    for key in ("encodings", "seeds", "train_len", "multiples", "scalings", "extensions", "scale_factor", "p_rope",
                "steps", "batch_size", "lr", "d_model", "n_layers", "n_heads", "n_kv_heads", "n_windows", "target"):
        v = getattr(args, key, None)
        if v is not None:
            values[key] = v
    L = int(values.get("train_len", 128))  # type: ignore[call-overload]
    # spans scale with L (defaults at L=128: target 32, sliding stride 64 over 128-token regions)
    values.setdefault("target", max(1, L // 4))
    values.setdefault("stride", max(1, L // 2))
    values.setdefault("region_len", L)
    return StudyConfig(**values)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the study and print the Markdown tables."""
    import time

    import torch

    from ropekit.study.distributed import init_distributed
    from ropekit.study.report import format_tables
    from ropekit.study.runner import run_study

    cfg = config_from_args(args)
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        dist = init_distributed(args.device)
        t0 = time.time()
        results = run_study(cfg, args.out, dist=dist, progress=not args.no_progress, root=args.root)
        if dist.is_main:
            print(format_tables(results))
            print(f"wall time this invocation: {time.time() - t0:.0f} s; results in {args.out}/")
    finally:
        torch.set_num_threads(threads)  # called in-process (tests, notebooks): leave the setting as found
    return 0


def main(argv: list[str] | None = None) -> int:
    """``ropekit study`` on its own argv (tests, notebooks); ``python -m ropekit study`` goes through the CLI."""
    parser = argparse.ArgumentParser(prog="ropekit study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
