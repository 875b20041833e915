"""Which HF architectures ``ropekit.patch`` handles, measured on the installed transformers.

For one model type: build a tiny random model (:mod:`ropekit.patching.zoo`), then check, against HF itself,

- ``own``: patched with its own RoPE, logits equal stock (fp32, <= 1e-5 of the logit scale) and greedy
  cached generation is token-identical;
- ``undo``: after ``undo()`` the model is bit-identical to never patched;
- ``linear``, ``yarn``: HF's own model built with linear x2 / YaRN x2 in its config, on the same weights,
  equals the tiny model patched with what ropekit reads from that config;
- ``per-type``: where the config nests RoPE per layer type, scaling one type only equals HF doing so.

A type either passes every check that applies, or ``ropekit.patch`` refuses it with a reason: a
``fail`` (patched but wrong) is the one outcome that must never happen.

>>> r = check_model_type("llama")                      # doctest: +SKIP
>>> r.status, r.checks["linear"]                       # doctest: +SKIP
('pass', 'ok')
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ropekit.patching.verify import cache_kwargs, returned_cache

__all__ = ["ATOL", "CoverageResult", "check_model_type", "greedy"]

ATOL = 1e-5  # relative to max(1, |logits|): fp32 logits of a 64-wide model differ ~1e-7 from fp32 angle rounding
_NEW_TOKENS = 5


@dataclass
class CoverageResult:
    """The outcome for one model type."""

    model_type: str
    status: str  # "pass", "refused" (patch raised, with reason), "fail" (patched, but differs), "unbuildable"
    reason: str = ""  # why refused / failed / unbuildable
    checks: dict[str, str] = field(default_factory=dict)  # check -> "ok" | "n/a: why" | "FAIL: what"
    path: str = ""  # "fused" or "tables"
    seconds: float = 0.0


@torch.no_grad()
def greedy(model: Any, prompt: torch.Tensor, n: int = _NEW_TOKENS) -> list[int]:
    """Greedy cached decoding, one token a step (what generation with a KV cache does)."""
    out = model(input_ids=prompt, use_cache=True)
    cache = returned_cache(out)
    tokens: list[int] = []
    nxt = out.logits[:, -1:].argmax(-1)
    for _ in range(n):
        tokens.append(int(nxt))
        if cache is None:  # no KV cache: re-run the whole sequence
            prompt = torch.cat([prompt, nxt], dim=1)
            out = model(input_ids=prompt)
        else:
            out = model(input_ids=nxt, use_cache=True, **cache_kwargs(model, cache))
            cache = returned_cache(out)
        nxt = out.logits[:, -1:].argmax(-1)
    return tokens


def _close(ref: tuple[torch.Tensor, ...], got: tuple[torch.Tensor, ...]) -> tuple[bool, float]:
    diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(ref, got))
    scale = max(1.0, max(float(a.abs().max()) for a in ref))
    return diff <= ATOL * scale, diff


def _twin(model: Any, config: Any, rope_parameters: Any) -> Any:
    """HF's own model with ``rope_parameters`` on the text config, carrying ``model``'s weights."""
    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(config)
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    text.rope_parameters = rope_parameters
    twin = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    twin.load_state_dict(model.state_dict())
    return twin


def _scaled_params(params: dict[str, Any], rope_types: tuple[str, ...], extra: dict[str, Any],
                   only: str | None = None) -> dict[str, Any]:
    nested = any(isinstance(v, dict) for v in params.values())
    if not nested:
        return {**params, **extra}
    return {t: ({**v, **extra} if isinstance(v, dict) and t in rope_types and (only is None or t == only) else v)
            for t, v in params.items()}


def _scaling_check(model: Any, config: Any, stock: tuple[torch.Tensor, ...], stock_params: dict[str, Any],
                   hf_extra: dict[str, Any], rope_types: tuple[str, ...], only: str | None = None) -> str:
    """HF's own model with the scaling in its config vs ropekit patching what ropekit reads from that config."""
    from ropekit.core.plan import RopePlan
    from ropekit.patching import patch
    from ropekit.patching.zoo import probe

    try:
        twin = _twin(model, config, _scaled_params(stock_params, rope_types, hf_extra, only))
        ref = probe(twin)
    except Exception as e:  # HF itself cannot run this scaling on this architecture
        return f"n/a: HF cannot build it ({type(e).__name__}: {str(e)[:120]})"
    if _close(stock, ref)[0]:
        return "n/a: HF's model ignores this scaling (same output as unscaled)"
    try:
        handle = patch(model, RopePlan.from_hf(twin.config))
    except (ValueError, TypeError) as e:
        return f"refused: {str(e)[:200]}"
    try:
        ok, diff = _close(ref, probe(model))
    finally:
        handle.undo()
    return "ok" if ok else f"FAIL: differs from HF's own by {diff:.3g}"


def check_model_type(model_type: str) -> CoverageResult:
    """Run every check on a tiny random ``model_type`` model; see the module docstring."""
    from ropekit.patching import patch
    from ropekit.patching.zoo import PROBE_TOKENS, probe, tiny_model

    t0 = time.perf_counter()
    res = CoverageResult(model_type, "pass")
    try:
        model, config = tiny_model(model_type)
        stock = probe(model)
    except Exception as e:
        res.status, res.reason = "unbuildable", f"{type(e).__name__}: {str(e)[:200]}"
        return res
    prompt = torch.tensor([PROBE_TOKENS[:-1]])
    ref_tokens = greedy(model, prompt)
    try:
        handle = patch(model)
    except (ValueError, TypeError) as e:
        res.status, res.reason = "refused", str(e)
        res.seconds = time.perf_counter() - t0
        return res
    try:
        res.path = "fused" if handle.fused else "tables"
        ok, diff = _close(stock, probe(model))
        res.checks["own"] = "ok" if ok else f"FAIL: own RoPE differs from stock by {diff:.3g}"
        same = greedy(model, prompt) == ref_tokens
        res.checks["generate"] = "ok" if same else "FAIL: greedy cached generation differs from stock"
        own = handle.own
    finally:
        handle.undo()
    again = probe(model)
    res.checks["undo"] = "ok" if all(torch.equal(a, b) for a, b in zip(stock, again)) else "FAIL: not bit-identical"
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    params = copy.deepcopy(getattr(text, "rope_parameters", None) or {})
    types = own.rope_types
    ctx = min(c.max_position_embeddings or 2048 for c in (own.by_type[t] for t in types) if c is not None)
    linear = {"rope_type": "linear", "factor": 2.0}
    res.checks["linear"] = _scaling_check(model, config, stock, params, linear, types)
    res.checks["yarn"] = _scaling_check(
        model, config, stock, params, {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": ctx},
        types)
    if len(types) > 1 and any(isinstance(v, dict) for v in params.values()):
        res.checks["per-type"] = _scaling_check(model, config, stock, params, linear, types, only=types[-1])
    else:
        res.checks["per-type"] = "n/a: RoPE parameters not nested per layer type"
    fails = [f"{k}: {v}" for k, v in res.checks.items() if v.startswith("FAIL")]
    if fails:
        res.status, res.reason = "fail", "; ".join(fails)
    res.seconds = time.perf_counter() - t0
    return res
