"""``doctor --load`` and ``--verify``: check the running code, not only the config.

:func:`check_live` calls every rotary module of a loaded model (modules whose class name ends in
``RotaryEmbedding``, or ropekit's patch adapters) at positions up to the context and compares the cos/sin
they return with the plan the config describes: a scaling "parsed but not applied" shows up here as a large
angle error, and HF's own float32 error at long positions is measured on the way.

>>> import transformers, torch
>>> cfg = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
...                                intermediate_size=128, vocab_size=256)
>>> model = transformers.AutoModelForCausalLM.from_config(cfg)
>>> from ropekit.core.plan import RopePlan
>>> out = check_live(model, RopePlan.from_hf(cfg), context=2048)
>>> out["findings"], out["report"]["modules"][0]["max_angle_error"] < 1e-3
([], True)
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.plan import RopePlan
from ropekit.doctor.distance import position_grid
from ropekit.doctor.findings import Finding, make

__all__ = ["LIVE_TOLERANCE", "check_live", "rotary_modules", "verify_gguf"]

#: angle error (rad) above which a live module is reported: far above fp32 rounding (~1e-2 at 1M positions).
LIVE_TOLERANCE = 5e-2


def rotary_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``(name, module)`` of every outermost rotary module: HF's ``*RotaryEmbedding`` classes and ropekit's
    patch adapters (``RopeAdapter``); modules nested inside one (an adapter's own tables) are left out."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    found: list[tuple[str, torch.nn.Module]] = []
    for n, m in model.named_modules():
        cls = type(m).__name__
        if not cls.endswith(("RotaryEmbedding", "RopeAdapter", "RotaryAdapter")):
            continue
        if any(n.startswith(f"{p}.") for p, _ in found):
            continue
        found.append((n, m))
    return found


def _takes_layer_type(module: torch.nn.Module) -> bool:
    try:
        return "layer_type" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def _compare(module: torch.nn.Module, cfg: RopeConfig, context: int, layer_type: str | None) -> dict[str, Any]:
    pos = position_grid(context)
    ids = pos.to(torch.long)[None, :]
    x = torch.zeros(1, 1, ids.shape[1], cfg.head_dim)
    with torch.no_grad():
        out = module(x, ids, layer_type) if layer_type is not None else module(x, ids)
    cos, sin = out[0], out[1]
    n = cfg.rotary_dim // 2
    cos, sin = cos.reshape(-1, cos.shape[-1])[:, :n].double(), sin.reshape(-1, sin.shape[-1])[:, :n].double()
    seq = context if cfg.scaling is not None and cfg.scaling.depends_on_seq_len else None
    inv, attn = cfg.frequencies(seq)
    ang = pos[:, None] * inv
    got_attn = torch.sqrt(cos**2 + sin**2).mean().item()
    live_ang = torch.atan2(sin, cos)
    err = (torch.remainder(live_ang - ang + math.pi, 2 * math.pi) - math.pi).abs()
    far = pos >= pos.max() / 2
    return {"max_angle_error": float(err.max()), "max_angle_error_far_half": float(err[far].max()),
            "max_abs_dcos": float((cos - attn * torch.cos(ang)).abs().max()),
            "max_abs_dsin": float((sin - attn * torch.sin(ang)).abs().max()),
            "attention_factor": got_attn, "attention_factor_config": attn}


def _load(source: str) -> torch.nn.Module:
    """The model only (no tokenizer needed): an HF dir directly, names and GGUFs via ropekit.load_model."""
    from pathlib import Path

    if (Path(source) / "config.json").is_file():
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(source, local_files_only=True).eval()
    from ropekit.models import load_model

    return load_model(source, device="cpu")[0]


def check_live(model: Any, plan: RopePlan, *, context: int) -> dict[str, Any]:
    """Compare ``model``'s rotary modules (a loaded model, or a name / path for :func:`ropekit.load_model`)
    with ``plan`` at positions ``0..context-1`` (subsampled). Returns ``{"report", "findings"}``."""
    if isinstance(context, bool) or not isinstance(context, int) or context < 2:
        raise ValueError(f"context must be an int >= 2, got {context!r}.")
    if isinstance(model, str):
        model = _load(model)
    mods = rotary_modules(model)
    findings: list[Finding] = []
    rows = []
    if not mods:
        findings.append(make("live-mismatch", "hf (live)", plan.types, f"no rotary module found in "
                             f"{type(model).__name__} (no class named *RotaryEmbedding)", "nothing to compare"))
    for name, m in mods:
        if _takes_layer_type(m):
            pairs = [(t, plan.by_type[t]) for t in plan.rope_types]
        elif plan.is_uniform and plan.rope_types:
            pairs = [(None, plan.single())]
        else:
            continue  # one module for several differently-rotating types: nothing to map it to
        for t, cfg in pairs:
            r = _compare(m, cfg, context, t)  # type: ignore[arg-type]
            types = [t] if t else list(plan.rope_types)
            rows.append({"module": name, "class": type(m).__name__, "layer_types": types, **r})
            bad_amp = abs(r["attention_factor"] - r["attention_factor_config"]) > 1e-3
            if r["max_angle_error"] > LIVE_TOLERANCE or bad_amp:
                findings.append(make("live-mismatch", "hf (live)", types,
                                     f"{name} ({type(m).__name__}) returns angles off by up to "
                                     f"{r['max_angle_error']:.3g} rad and attention factor {r['attention_factor']:.4g} "
                                     f"(config: {r['attention_factor_config']:.4g}) against {cfg!r:.160}",
                                     "the config is parsed but not applied: check what sets this module's inv_freq / "
                                     "attention_scaling, or run ropekit.patch(model) to compute the config's RoPE"))
    return {"report": {"context": context, "modules": rows}, "findings": findings}


def verify_gguf(dep: Any, diag: Any) -> dict[str, Any]:
    """Run llama.cpp (llama-cpp-python) on the deployment's GGUF against the ropekit-patched HF model, with
    the RoPE llama.cpp runs here (:func:`ropekit.interop.llama_cpp_run.verify_llama_cpp`)."""
    if dep.gguf_path is None:
        raise ValueError("--verify needs a GGUF (pass a .gguf, a model name, or --gguf PATH).")
    try:
        from ropekit.interop.llama_cpp_run import verify_llama_cpp
    except ImportError as exc:
        raise ValueError(f"--verify needs ropekit.interop.llama_cpp_run.verify_llama_cpp: {exc}") from None
    view = diag.views.get("llama.cpp")
    cfg = None
    if view is not None and view.plan is not None and view.plan.is_uniform and view.plan.rope_types:
        cfg = view.plan.single().scaling
    try:
        return verify_llama_cpp(dep.gguf_path, cfg, length=min(diag.target, 4096))
    except ModuleNotFoundError as exc:
        raise ValueError(f"--verify needs llama-cpp-python ({exc}); see README for the build flags.") from None
