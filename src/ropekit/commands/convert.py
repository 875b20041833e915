"""Convert a model's RoPE config between dialects (HF, GGUF, llama.cpp flags, vLLM) and print it.

SRC is an HF config.json, a model directory, or a .gguf file. Output goes to stdout (JSON, or a flag line
for llama.cpp); notes about weight layout go to stderr. Configs a dialect cannot express are refused
with the reason, never written lossily.

  ropekit convert config.json --to gguf --arch llama
  ropekit convert model.gguf --to hf
  ropekit convert model.gguf --to llama.cpp
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

__all__ = ["add_arguments", "convert", "run"]

TARGETS = ("hf", "gguf", "llama.cpp", "vllm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="HF config.json, model directory, or .gguf file")
    parser.add_argument("--to", required=True, choices=TARGETS, help="target dialect")
    parser.add_argument("--legacy", action="store_true", help="hf: write transformers v4 rope_scaling/rope_theta")
    parser.add_argument("--arch", default=None, help="gguf: architecture name (default: SRC's model type)")
    parser.add_argument("--model-type", default=None, help="hf: model_type (needed for interleaved layouts)")
    parser.add_argument("--layer-type", default=None, help="HF per-layer-type rope_parameters entry to read")


def _src_model_type(path: str) -> str | None:
    if path.endswith(".gguf"):
        return None
    cfg_json = os.path.join(path, "config.json") if os.path.isdir(path) else path
    try:
        with open(cfg_json, encoding="utf-8") as f:
            return json.load(f).get("model_type")
    except (OSError, ValueError):
        return None


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def convert(src: str, to: str, *, legacy: bool = False, arch: str | None = None, model_type: str | None = None,
            layer_type: str | None = None) -> Any:
    """The converted config: a dict (hf, gguf, vllm) or an argument list (llama.cpp)."""
    from ropekit.interop import load_rope_config, to_gguf_metadata, to_gguf_tensors, to_hf, to_llama_cpp_args, to_vllm
    from ropekit.interop.gguf import GGUF_ARCH_LAYOUT
    from ropekit.interop.hf import INTERLEAVED_MODEL_TYPES

    cfg = load_rope_config(src, layer_type=layer_type)
    if to == "hf":
        want = "interleaved" if model_type in INTERLEAVED_MODEL_TYPES else "half"
        if cfg.layout != want:
            _note(f"HF {model_type or 'Llama-style'} checkpoints pair channels {want!r}; convert the q/k weights with "
                  f"ropekit.interop.permute_qk(w, n_heads, head_dim, src={cfg.layout!r}, dst={want!r}) "
                  "(k: the kv-head count).")
            cfg = cfg.replace(layout=want)
        return to_hf(cfg, legacy=legacy, model_type=model_type)
    if to == "gguf":
        arch = arch or _src_model_type(src)
        if arch is None:
            raise ValueError("--to gguf needs --arch (SRC names no model_type).")
        want = GGUF_ARCH_LAYOUT.get(arch)
        if want is not None and cfg.layout != want:
            _note(f"llama.cpp runs {arch!r} with {want!r} pairs; its converter permutes the q/k weights "
                  f"(permute_qk(w, n_heads, head_dim, src={cfg.layout!r}, dst={want!r})).")
            cfg = cfg.replace(layout=want)
        tensors = {k: v.tolist() for k, v in to_gguf_tensors(cfg).items()}
        return {"metadata": to_gguf_metadata(cfg, arch), "tensors": tensors}
    if to == "llama.cpp":
        return to_llama_cpp_args(cfg)
    return to_vllm(cfg)


def run(args: argparse.Namespace) -> int:
    out = convert(args.src, args.to, legacy=args.legacy, arch=args.arch, model_type=args.model_type,
                  layer_type=args.layer_type)
    if isinstance(out, list):
        print(shlex.join(out))
    else:
        print(json.dumps(out, indent=2))
    return 0
