"""Patch-time proof that ropekit reproduces the model's own computation, on the real model being patched.

Two checks, both with the model's *own* RoPE read by ropekit (so any difference is ropekit's fault, or a
config the model does not actually apply):

1. each rotary module, called on a deep copy (the stock module's caches are never touched), equals
   ropekit's tables rendered in one of the known formats, at short and near-context positions, with a
   tolerance that grows with the position as the module's fp32 angle rounding does;
2. the whole model, stock vs patched, on a short probe prompt plus one cached decode step.

A failure raises :class:`PatchVerificationError` naming the model type, the transformers version and
what differed; nothing is left patched.
"""

from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ropekit.core.config import RopeConfig
from ropekit.core.plan import RopePlan
from ropekit.patching.adapter import RotarySite
from ropekit.patching.formats import as_tensors, detect_format

__all__ = [
    "PROBE_TOKENS", "PatchVerificationError", "SiteFormat", "cache_kwargs", "model_probe", "outputs_close",
    "probe_site", "returned_cache",
]

PROBE_TOKENS = 8  # prefill length of the end-to-end probe (one decode step follows)
_SHORT = 24  # consecutive positions probed on each rotary module, then two near the context


class PatchVerificationError(ValueError):
    """ropekit's replacement does not reproduce the model's own computation: the model is left unpatched."""


def where(model: nn.Module) -> str:
    import transformers

    mt = getattr(getattr(model, "config", None), "model_type", None)
    return f"model_type={mt!r} (transformers {transformers.__version__})"


@dataclass(frozen=True)
class SiteFormat:
    """What one stock rotary module was seen to compute."""

    fmt: str  # a ropekit.patching.formats.FORMATS name
    types: tuple[str, ...]  # layer types whose own RopeConfig it reproduces
    out_dtype: torch.dtype | None  # None: its output follows x's dtype
    max_error: float  # largest |ropekit - stock| over the probe


def _probe_positions(configs: list[RopeConfig], device: torch.device) -> torch.Tensor:
    ctx = min((c.original_max_position_embeddings or c.max_position_embeddings or 4096) for c in configs)
    far = sorted({p for p in (ctx // 2, ctx - 1) if p >= _SHORT})
    return torch.tensor([*range(_SHORT), *far], device=device)[None]  # (1, positions)


def _tolerance(pos: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # fp32 angles: |error| <~ position * (inv_freq rounding + angle rounding), both ~6e-8 relative
    tol = 1e-6 + 4e-7 * pos.to(torch.float32)[..., None]
    if dtype in (torch.float16, torch.bfloat16):
        tol = tol + 2 * torch.finfo(dtype).eps  # the module rounds its output to the model dtype
    return tol


def probe_site(model: nn.Module, site: RotarySite, own: RopePlan, dtype: torch.dtype) -> SiteFormat:
    """Which format and which layer types' configs ``site``'s stock module reproduces; raises if none."""
    if site.layer_index is not None:
        cfg = own.for_layer(site.layer_index) if site.layer_index < own.num_layers else None
        candidates = {own.layer_types[site.layer_index]: cfg} if cfg is not None else {}
    else:
        candidates = {t: own.by_type[t] for t in own.rope_types}
    if not candidates:
        raise PatchVerificationError(f"{where(model)}: rotary module {site.path!r} belongs to a layer the config "
                                     "marks as NoPE; ropekit will not guess what it computes.")
    module = copy.deepcopy(site.module)  # dynamic methods update their caches when called: never on the stock
    device = next((b.device for b in site.module.buffers()), torch.device("cpu"))
    pos = _probe_positions([c for c in candidates.values() if c is not None], device)
    x = torch.zeros(1, pos.shape[1], 1, dtype=dtype, device=device)
    tol = _tolerance(pos, dtype)
    matched: list[str] = []
    fmt: str | None = None
    out_dtype: torch.dtype | None = None
    worst = 0.0
    report = []
    for lt, cfg in candidates.items():
        assert cfg is not None
        try:
            with torch.no_grad():
                stock = module(x, pos, lt) if site.takes_layer_type else module(x, pos)
            stock_t = as_tensors(stock)
        except Exception as e:  # the module's own error: say which call failed
            raise PatchVerificationError(
                f"{where(model)}: calling rotary module {site.path!r} as forward(x, position_ids"
                f"{', layer_type' if site.takes_layer_type else ''}) failed: {type(e).__name__}: {e}"
            ) from e
        cos, sin = cfg.cos_sin(pos.cpu())
        name, err = detect_format(stock, cos.to(device), sin.to(device), tol)
        report.append(f"{lt}: best |diff| {err:.3g} (shapes {[tuple(t.shape) for t in stock_t]})")
        if name is None:
            continue
        if fmt is not None and name != fmt:
            raise PatchVerificationError(f"{where(model)}: rotary module {site.path!r} renders layer types in "
                                         f"different formats ({fmt} vs {name}).")
        fmt, worst = name, max(worst, err)
        matched.append(lt)
        sdt = stock_t[0].dtype
        out_dtype = None if sdt == dtype or stock_t[0].is_complex() else sdt
    if fmt is None or (site.takes_layer_type and len(matched) != len(candidates)):
        raise PatchVerificationError(
            f"{where(model)}: ropekit's reading of the config does not reproduce rotary module {site.path!r} "
            f"at positions up to {int(pos.max())}: " + "; ".join(report)
            + ". The model computes a RoPE its config does not describe (or in a format ropekit does not know)."
        )
    return SiteFormat(fmt=fmt, types=tuple(matched), out_dtype=out_dtype, max_error=worst)


def _vocab(model: nn.Module) -> int:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    v = getattr(cfg, "vocab_size", None)
    return int(v) if v else 256


def _main_output(out: Any) -> torch.Tensor:
    for key in ("logits", "last_hidden_state"):
        t = getattr(out, key, None)
        if isinstance(t, torch.Tensor):
            return t
    raise PatchVerificationError(f"model output {type(out).__name__} has neither logits nor last_hidden_state.")


@functools.lru_cache(maxsize=256)
def _cache_arg(forward: Any) -> str:
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def cache_kwargs(model: nn.Module, cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for ``model.forward``: transformers 5.24 renamed ``past_key_values`` to ``cache``."""
    fwd = model.forward
    # keyed on the class's function, never the bound method: the cache must not keep models alive
    func = getattr(fwd, "__func__", None)
    return {(_cache_arg(func) if func is not None else _cache_arg.__wrapped__(fwd)): cache}


def returned_cache(out: Any) -> Any:
    """The KV cache a forward returned (``cache`` in 5.24+, ``past_key_values`` before), or None."""
    cache = getattr(out, "cache", None)  # not `or`: a cache object may define __len__ and read as False
    return cache if cache is not None else getattr(out, "past_key_values", None)


def model_probe(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs of a fixed ``PROBE_TOKENS``-token prompt and of one cached decode step after it."""
    device = next(model.parameters()).device
    vocab = _vocab(model)
    ids = ((torch.arange(PROBE_TOKENS + 1, device=device) * 7919 + 11) % max(vocab - 1, 1))[None]
    was_training = model.training
    threads = torch.get_num_threads()
    # an 8-token probe gains nothing from threads, and OpenMP workers spinning on a busy CPU cost seconds
    torch.set_num_threads(1)
    model.eval()
    try:
        with torch.no_grad():
            out = model(input_ids=ids[:, :-1], use_cache=True)
            cache = returned_cache(out)
            if cache is None:  # a model without a KV cache (recurrent state, or none): check the next token whole
                return _main_output(out), _main_output(model(input_ids=ids))[:, -1:]
            step = model(input_ids=ids[:, -1:], use_cache=True, **cache_kwargs(model, cache))
    finally:
        model.train(was_training)
        torch.set_num_threads(threads)
    return _main_output(out), _main_output(step)


def outputs_close(ref: torch.Tensor, got: torch.Tensor) -> tuple[bool, float, float]:
    """(close?, max |diff|, tolerance): relative to the output's scale, from the dtype's epsilon."""
    if ref.shape != got.shape:
        return False, float("inf"), 0.0
    scale = float(ref.abs().max()) if ref.numel() else 1.0
    # fp32: a rotation off by fp32 rounding moves outputs ~1e-6 relative, a wrong one by far more than 1e-4;
    # half precision rounds every activation, so only a coarse bound is meaningful there
    rel = 5e-2 if ref.dtype in (torch.bfloat16, torch.float16) else 1e-4
    tol = max(1.0, scale) * rel
    diff = float((ref.float() - got.float()).abs().max()) if ref.numel() else 0.0
    return diff <= tol, diff, tol
