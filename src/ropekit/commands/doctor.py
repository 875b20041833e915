"""Check a deployment's RoPE per engine and layer type; findings with exact fixes (exit 0 clean, 1 warn, 2 bad input).

SRC is an HF model dir, a config.json, a .gguf or a model name (smollm2-135m). Pass the flags you deploy
with (--llama-cpp-args, --vllm-args, --hf-overrides); --context sets the length to check (default: the
configured max). --load also checks the loaded model's own rotary modules; --verify runs llama.cpp
(llama-cpp-python) against the ropekit-patched HF model on the GGUF. Finding codes: docs/doctor.md.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", help="HF model dir, config.json, .gguf, or a model name")
    parser.add_argument("--engine", default="all", choices=["hf", "vllm", "llama.cpp", "all"])
    parser.add_argument("--context", type=int, default=None, help="positions to check (default: configured max)")
    parser.add_argument("--json", action="store_true", help="print one JSON document (findings, engines)")
    parser.add_argument("--llama-cpp-args", default="", metavar="ARGS", help='llama.cpp flags, e.g. "-c 16384 ..."')
    parser.add_argument("--vllm-args", default=None, metavar="JSON", help='vLLM engine args, e.g. {"max_model_len": N}')
    parser.add_argument("--hf-overrides", default=None, metavar="JSON", help="config keys replaced at load")
    parser.add_argument("--gguf", default=None, metavar="PATH", help="the GGUF converted from SRC's HF config")
    parser.add_argument("--hf-version", type=int, default=None, choices=[4, 5],
                        help="transformers semantics for the hf engine (default: the installed one)")
    parser.add_argument("--load", action="store_true", help="also check the loaded model's rotary modules")
    parser.add_argument("--verify", action="store_true", help="run llama.cpp vs the patched HF model (slow)")


def _json_arg(name: str, text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object, got {type(value).__name__}.")
    return value


def run(args: argparse.Namespace) -> int:
    from ropekit.doctor import diagnose, load_deployment
    from ropekit.doctor.report import format_text, to_json

    dep = load_deployment(args.source, gguf=args.gguf, llama_cpp_args=args.llama_cpp_args,
                          vllm_args=_json_arg("--vllm-args", args.vllm_args),
                          hf_overrides=_json_arg("--hf-overrides", args.hf_overrides), hf_version=args.hf_version)
    diag = diagnose(dep, engines=args.engine, context=args.context)
    extra: dict[str, Any] = {}
    status = diag.exit_status
    live_findings = []
    if args.load:
        from ropekit.doctor.live import check_live

        live = check_live(dep.model or args.source, diag.reference, context=diag.target)
        extra["live"] = live["report"]
        live_findings = live["findings"]
        status = max(status, int(any(f.severity in ("error", "warning") for f in live_findings)))
    if args.verify:
        from ropekit.doctor.live import verify_gguf

        extra["verify"] = verify_gguf(dep, diag)
        status = max(status, 0 if extra["verify"]["ok"] else 1)
    if args.json:
        doc = to_json(diag, extra)
        doc["findings"] += [f.to_dict() for f in live_findings]
        doc["exit_status"] = status
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(format_text(diag))
        for f in live_findings:
            print(f"{f.severity.upper():7} {f.code} [{f.engine}; {', '.join(f.layer_types)}]\n        {f.message}\n"
                  f"        fix: {f.fix}")
        if "live" in extra:
            print("live model: " + json.dumps(extra["live"], default=str))
        if "verify" in extra:
            v = extra["verify"]
            print(f"llama.cpp vs HF perplexity: max relative difference {v['max_rel_diff']:.4f} "
                  f"(tolerance {v['tolerance']}) -> {'ok' if v['ok'] else 'MISMATCH'}")
    return status
