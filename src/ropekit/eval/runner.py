"""Run an evaluation grid (methods x factors x {perplexity windows, passkey cells}) resumably.

Every input is validated before the model does any work (:meth:`EvalPlan.validate`, then
:func:`prepare`); each finished cell is written to ``results.json`` at once (atomic), so a rerun with
the same ``out`` directory skips what is done. A cell is identified by method, factor, length, text
and window/depth/trial; a window whose tokens changed (other corpus, other tokenizer) is recomputed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ropekit.core.scaling import FACTOR_METHODS, Scaling, scaling_from_factor
from ropekit.core.validation import check_choice

__all__ = ["METHODS", "EvalPlan", "Prepared", "prepare", "run_plan", "summarize"]

#: methods ``ropekit eval`` accepts; "none" is the model's own RoPE, "longrope" the model's own factors.
METHODS = (*FACTOR_METHODS, "longrope")


@dataclass
class EvalPlan:
    """What to evaluate. Lengths are in tokens; ``None`` means "derived from the trained context L"."""

    model: str = "smollm2-135m"
    methods: tuple[str, ...] = ("none", "linear", "ntk", "dynamic", "yarn")
    factors: tuple[float, ...] = (2.0,)
    lengths: tuple[int, ...] | None = None  # perplexity window lengths; default (2L,)
    windows: int = 1  # windows per length
    passkey_lengths: tuple[int, ...] | None = None  # default (1.25L,)
    passkey_depths: tuple[float, ...] = (0.5,)
    passkey_trials: int = 1
    text: str = "stdlib"
    device: str | None = None
    out: str = "ropekit-eval"
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Cheap checks that need neither the model nor the text."""
        if not self.methods:
            raise ValueError("methods must name at least one method.")
        for m in self.methods:
            check_choice("method", m, METHODS)
        if not self.factors:
            raise ValueError("factors must hold at least one factor.")
        for f in self.factors:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f <= 0:
                raise ValueError(f"factor must be a finite number > 0, got {f!r}.")
        for name in ("lengths", "passkey_lengths"):
            for n in getattr(self, name) or ():
                if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
                    raise ValueError(f"{name} must be positive ints (tokens), got {n!r}.")
        for n in self.lengths or ():
            if n < 16:
                raise ValueError(f"lengths must be >= 16 tokens for a perplexity window, got {n}.")
        for n in self.passkey_lengths or ():
            if n < 128:
                raise ValueError(f"passkey_lengths must be >= 128 tokens (the prompt needs ~100), got {n}.")
        for d in self.passkey_depths:
            if not 0.0 <= d <= 1.0:
                raise ValueError(f"passkey depths must be in [0, 1], got {d}.")
        for name in ("windows", "passkey_trials"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}.")


@dataclass
class Prepared:
    plan: EvalPlan
    model: Any
    tokenizer: Any
    context: int  # the trained context L
    lengths: tuple[int, ...]
    passkey_lengths: tuple[int, ...]
    windows: dict[int, list[Any]]  # length -> token windows
    scalings: dict[str, Scaling | None]  # cell label -> scaling (None = model's own RoPE)
    device: str


def _available_bytes(device: Any) -> int | None:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _check_memory(model: Any, n: int, device: Any) -> None:
    """Refuse lengths whose forward pass cannot fit, before running it."""
    cfg = model.config
    hidden, layers = cfg.hidden_size, cfg.num_hidden_layers
    heads, kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    inter = getattr(cfg, "intermediate_size", 4 * hidden)
    b = 4  # fp32 activations
    per_token = b * (8 * hidden + 3 * inter + 2 * layers * kv * head_dim + (heads + 2 * kv) * head_dim + 1024)
    need = n * per_token
    if getattr(cfg, "_attn_implementation", "sdpa") == "eager":
        need += 2 * heads * n * n * b  # eager attention materialises the score matrix
    avail = _available_bytes(device)
    if avail is not None and need > 0.9 * avail:
        raise ValueError(
            f"length {n} needs about {need / 2**30:.1f} GiB for one forward pass but only "
            f"{avail / 2**30:.1f} GiB is available on {device}; use shorter lengths."
        )


def _cell_scalings(plan: EvalPlan, own: Any, context: int) -> dict[str, Scaling | None]:
    out: dict[str, Scaling | None] = {}
    for m in plan.methods:
        if m == "none":
            out["none"] = own.scaling
        elif m == "longrope":
            if own.method != "longrope":
                raise ValueError(
                    "method 'longrope' needs the model's own LongRoPE short/long factors, but this model's RoPE is "
                    f"{own.method!r}; pick one of {list(FACTOR_METHODS)}."
                )
            out["longrope"] = own.scaling
        else:
            for f in plan.factors:
                out[f"{m}@{f:g}"] = scaling_from_factor(m, float(f), original_max_position_embeddings=context)
    return out


def prepare(plan: EvalPlan) -> Prepared:
    """Validate everything, load the model and cut the text: all errors surface here, before long work."""
    from ropekit.eval.passkey import build_prompt
    from ropekit.eval.text import resolve_text, token_windows
    from ropekit.models import load_model, pick_device, resolve_model, rope_config_of

    plan.validate()
    resolve_model(plan.model)  # unknown names / missing files fail before loading anything
    source = resolve_text(plan.text)
    device = pick_device(plan.device)
    own = rope_config_of(plan.model)  # config only: method/model mismatches fail before loading weights
    context = own.original_max_position_embeddings or own.max_position_embeddings
    if context is None:
        raise ValueError(f"model {plan.model!r} has no max_position_embeddings: cannot place the position buckets.")
    scalings = _cell_scalings(plan, own, context)
    lengths = tuple(plan.lengths or (2 * context,))
    pk_lengths = tuple(plan.passkey_lengths or (context + context // 4,)) if plan.passkey_trials else ()
    model, tok = load_model(plan.model, device=device)
    for n in {*lengths, *pk_lengths}:
        _check_memory(model, n, device)
    windows = {n: token_windows(tok, source, n, plan.windows) for n in lengths} if plan.windows else {}
    for n in pk_lengths:
        build_prompt(tok, n, plan.passkey_depths[0], 12345)  # raises if the length cannot hold a prompt
    return Prepared(plan, model, tok, context, lengths, pk_lengths, windows, scalings, str(device))


def _cells(p: Prepared) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, label, spec) for every cell, perplexity first (the headline), then passkey."""
    text_id = Path(p.plan.text).name if p.plan.text != "stdlib" else "stdlib"
    cells = []
    for n in p.lengths:
        for i, w in enumerate(p.windows.get(n, [])):
            for label in p.scalings:
                cells.append((f"ppl|{label}|len{n}|{text_id}|w{i}", label, {"kind": "ppl", "length": n, "window": w}))
    for n in p.passkey_lengths:
        for d in p.plan.passkey_depths:
            for t in range(p.plan.passkey_trials):
                for label in p.scalings:
                    spec = {"kind": "passkey", "length": n, "depth": d, "trial": t}
                    cells.append((f"passkey|{label}|len{n}|d{d:g}|t{t}", label, spec))
    return cells


def _cost(spec: dict[str, Any], context: int) -> float:
    n = spec["length"]
    return n * (1 + n / (2 * context))  # linear layers + causal attention, in "token" units for the ETA


def run_plan(p: Prepared, *, progress: bool = True) -> Any:
    """Run every cell not yet in ``<out>/results.json``; returns the :class:`ResultStore`."""
    from tqdm.auto import tqdm

    from ropekit.eval.passkey import passkey_trial
    from ropekit.eval.perplexity import perplexity_record, token_losses
    from ropekit.eval.store import ResultStore
    from ropekit.patching import patch

    out = Path(p.plan.out)
    store = ResultStore(out / "results.json")
    model_id = Path(p.plan.model).name if os.path.exists(p.plan.model) else p.plan.model
    if store.meta.get("model") not in (None, model_id):
        raise ValueError(
            f"{out}/results.json holds results for model {store.meta['model']!r}, not {model_id!r}; "
            "use another --out directory."
        )
    store.set_meta(model=model_id, context=p.context, device=p.device, text=p.plan.text)
    todo = []
    for key, label, spec in _cells(p):
        rec = store.get(key)
        if rec is not None and (spec["kind"] != "ppl" or rec.get("sha") == spec["window"].sha):
            continue
        todo.append((key, label, spec))
    bar = tqdm(total=sum(_cost(s, p.context) for _, _, s in todo), unit="tok", unit_scale=True,
               disable=not progress, desc="ropekit eval", dynamic_ncols=True)
    for key, label, spec in todo:
        bar.set_postfix_str(f"{label} {spec['kind']} {spec['length']}", refresh=True)
        t0 = time.perf_counter()
        with patch(p.model, p.scalings[label]):
            if spec["kind"] == "ppl":
                rec = perplexity_record(token_losses(p.model, spec["window"].ids), p.context)
                rec.update(sha=spec["window"].sha, doc=spec["window"].doc, start=spec["window"].start)
            else:
                rec = passkey_trial(p.model, p.tokenizer, spec["length"], spec["depth"], spec["trial"])
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        store.put(key, rec)
        bar.update(_cost(spec, p.context))
    bar.close()
    return store


def summarize(p: Prepared, store: Any) -> dict[str, Any]:
    """Per method: perplexity by bucket (with bootstrap CI) per length, passkey accuracy (Wilson 95%)."""
    from ropekit.eval.perplexity import summarize_perplexity
    from ropekit.eval.stats import wilson_interval

    methods: dict[str, Any] = {}
    for key, label, spec in _cells(p):
        rec = store.get(key)
        if rec is None:
            continue
        m = methods.setdefault(label, {"ppl": {}, "passkey": {}, "seconds": 0.0})
        m["seconds"] += rec.get("seconds", 0.0)
        if spec["kind"] == "ppl":
            m["ppl"].setdefault(str(spec["length"]), []).append(rec)
        else:
            cell = m["passkey"].setdefault(f"{spec['length']}|{spec['depth']:g}", {"correct": 0, "trials": 0})
            cell["correct"] += int(rec["correct"])
            cell["trials"] += 1
    for m in methods.values():
        m["ppl"] = {n: summarize_perplexity(recs) for n, recs in m["ppl"].items()}
        for cell in m["passkey"].values():
            lo, hi = wilson_interval(cell["correct"], cell["trials"])
            cell.update(accuracy=cell["correct"] / cell["trials"], lo95=lo, hi95=hi)
    plan = asdict(p.plan)
    plan.pop("extra", None)
    return {"model": plan["model"], "context": p.context, "device": p.device, "plan": plan, "methods": methods}
