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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ropekit.eval.memory import PeakMeter, check_memory
from ropekit.eval.methods import DEFAULT_METHODS, LAYERED_DEFAULT_METHODS, METHODS, PatchSpec, parse_method

__all__ = ["METHODS", "EvalPlan", "Prepared", "prepare", "run_plan", "summarize"]


@dataclass
class EvalPlan:
    """What to evaluate. Lengths are in tokens; ``None`` means "derived from the trained context L"."""

    model: str = "smollm2-135m"
    # method specs (ropekit.eval.methods grammar, e.g. "yarn", "linear@8:full_attention"); None: the default
    # grid, DEFAULT_METHODS for a single-RoPE model, LAYERED_DEFAULT_METHODS for a per-layer-type one (Gemma 3)
    methods: tuple[str, ...] | None = None
    factors: tuple[float, ...] = (2.0,)
    lengths: tuple[int, ...] | None = None  # perplexity window lengths; default (2L,)
    windows: int = 1  # windows per length
    passkey_lengths: tuple[int, ...] | None = None  # default (1.125L,): L + L/8, beyond the trained context
    # fraction of the filler before the key; 0.98 puts it ~210 tokens before the question at 1.125L of SmolLM2,
    # which keeps 8 trials x 5 methods inside the 15-min default (a trial costs what follows the key)
    passkey_depths: tuple[float, ...] = (0.98,)
    passkey_trials: int = 8  # trials (random keys) per method x length x depth
    # trials of one (method, length, depth) start from one prefill of their shared prefix (see
    # ropekit.eval.passkey); False: every prompt in one forward (cells keyed apart: "...|full")
    passkey_reuse: bool = True
    text: str = "stdlib"  # a genre of ropekit.eval.text.GENRES ("stdlib", "kjv") or a file / directory
    device: str | None = None
    out: str = "ropekit-eval"
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Cheap checks that need neither the model nor the text."""
        if self.methods is not None and not self.methods:
            raise ValueError("methods must name at least one method.")
        for m in self.methods or ():
            parse_method(m)
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
        if not isinstance(self.passkey_reuse, bool):
            raise TypeError(f"passkey_reuse must be True or False, got {self.passkey_reuse!r}.")
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
    scalings: dict[str, PatchSpec]  # cell label -> ropekit.patch spec (see ropekit.eval.methods)
    device: str


def _weights_bytes(directory: Path, config: Any) -> int:
    """Bytes the fp32 parameters take once loaded: the weight files' size, x2 when stored in 16 bits."""
    size = sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in directory.glob(pattern))
    stored = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32")
    return size * (2 if stored.removeprefix("torch.") in ("bfloat16", "float16") else 1)


def prepare(plan: EvalPlan) -> Prepared:
    """Validate everything, load the model and cut the text: all errors surface here, before long work."""
    from ropekit.eval.methods import cell_scalings, model_rope
    from ropekit.eval.passkey import build_prompt
    from ropekit.eval.text import resolve_text, token_windows
    from ropekit.models import hf_config_of, hf_directory, load_model, pick_device, resolve_model

    plan.validate()
    resolve_model(plan.model)  # unknown names / missing files fail before loading anything
    source = resolve_text(plan.text)
    device = pick_device(plan.device)
    config = hf_config_of(plan.model)  # config only: method/model mismatches fail before loading weights
    rope = model_rope(config)
    if plan.methods is None:
        plan = replace(plan, methods=LAYERED_DEFAULT_METHODS if rope.layered else DEFAULT_METHODS)
    scalings = cell_scalings(plan.methods, plan.factors, rope)
    context = rope.context
    lengths = tuple(plan.lengths or (2 * context,))
    pk_lengths = tuple(plan.passkey_lengths or (context + context // 8,)) if plan.passkey_trials else ()
    weights = _weights_bytes(hf_directory(resolve_model(plan.model)), config)
    for n in sorted(set(lengths)):  # before loading the weights: a refusal costs nothing
        check_memory(config, n, device, weights_bytes=weights)
    for n in sorted(set(pk_lengths)):
        check_memory(config, n, device, passkey=True, weights_bytes=weights)
    model, tok = load_model(plan.model, device=device)
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
    mode = "" if p.plan.passkey_reuse else "|full"
    for label in p.scalings:  # trials innermost: one patch and one prefix prefill serve them all
        for n in p.passkey_lengths:
            for d in p.plan.passkey_depths:
                for t in range(p.plan.passkey_trials):
                    spec = {"kind": "passkey", "length": n, "depth": d, "trial": t}
                    cells.append((f"passkey|{label}|len{n}|d{d:g}|t{t}{mode}", label, spec))
    return cells


def _cost(spec: dict[str, Any], context: int, start: float = 0.0) -> float:
    """Forward cost of tokens ``start*n .. n`` of an ``n``-token input, in "token" units for the ETA."""
    n, a = spec["length"], start * spec["length"]
    return (n - a) * (1 + (n + a) / (4 * context))  # linear layers + causal attention over 0..t


def _done(spec: dict[str, Any], rec: Any) -> bool:
    if rec is None:
        return False
    if spec["kind"] == "ppl":
        return rec.get("sha") == spec["window"].sha  # a window whose tokens changed is recomputed
    return "key_logprob" in rec  # a passkey record of an older ropekit (no teacher-forced score) is rerun


def run_plan(p: Prepared, *, progress: bool = True) -> Any:
    """Run every cell not yet in ``<out>/results.json``; returns the :class:`ResultStore`."""
    from tqdm.auto import tqdm

    from ropekit.eval.passkey import passkey_trials
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
    todo = [(key, label, spec) for key, label, spec in _cells(p) if not _done(spec, store.get(key))]
    reuse = p.plan.passkey_reuse
    groups: dict[tuple[str, int, float], list[tuple[str, int]]] = {}
    for key, label, spec in todo:
        if spec["kind"] == "passkey":
            groups.setdefault((label, spec["length"], spec["depth"]), []).append((key, spec["trial"]))
    total = sum(_cost(s, p.context) for _, _, s in todo if s["kind"] == "ppl") + sum(
        len(c) * _cost({"length": n}, p.context, d if reuse else 0.0)
        + (_cost({"length": n}, p.context) - _cost({"length": n}, p.context, d) if reuse else 0.0)
        for (_, n, d), c in groups.items()
    )
    bar = tqdm(total=total, unit="tok", unit_scale=True, disable=not progress, desc="ropekit eval", dynamic_ncols=True)
    for key, label, spec in todo:
        if spec["kind"] != "ppl":
            continue
        bar.set_postfix_str(f"{label} ppl {spec['length']}", refresh=True)
        t0 = time.perf_counter()
        with PeakMeter(p.model.device) as meter, patch(p.model, p.scalings[label]):
            rec = perplexity_record(token_losses(p.model, spec["window"].ids), p.context)
            rec.update(sha=spec["window"].sha, doc=spec["window"].doc, start=spec["window"].start)
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        if meter.peak is not None:  # process peak RSS on CPU (weights included), peak allocation on CUDA
            rec["peak_gib"] = round(meter.peak / 2**30, 3)
        store.put(key, rec)
        bar.update(_cost(spec, p.context))
    for (label, n, d), cells in groups.items():
        bar.set_postfix_str(f"{label} passkey {n} x{len(cells)}", refresh=True)
        keys = {t: k for k, t in cells}
        split = d if reuse else 0.0  # each trial runs from the key on; the prefix once, with the first one
        first_extra = _cost({"length": n}, p.context) - _cost({"length": n}, p.context, split) if reuse else 0.0
        meter, finished = PeakMeter(p.model.device), []
        try:
            with meter, patch(p.model, p.scalings[label]):
                for t, rec in passkey_trials(p.model, p.tokenizer, n, d, list(keys), reuse=reuse):
                    finished.append(keys[t])
                    store.put(keys[t], rec)
                    bar.update(_cost({"length": n}, p.context, split) + first_extra)
                    first_extra = 0.0
        finally:  # one peak for the group (shared prefix included), known once it ends, interrupted or not
            if meter.peak is not None and finished:
                for k in (k for k in finished if k in store.cells):
                    store.cells[k]["peak_gib"] = round(meter.peak / 2**30, 3)
                store.save()
    bar.close()
    return store


def summarize(p: Prepared, store: Any) -> dict[str, Any]:
    """Per method: perplexity by bucket (bootstrap CI) per length; per passkey length|depth: accuracy (Wilson
    95%) and the teacher-forced key log-probability, nats per digit, mean over trials with a bootstrap 95% CI."""
    from ropekit.eval.perplexity import summarize_perplexity
    from ropekit.eval.stats import bootstrap_mean, wilson_interval

    methods: dict[str, Any] = {}
    for key, label, spec in _cells(p):
        rec = store.get(key)
        if not _done(spec, rec):
            continue
        m = methods.setdefault(label, {"ppl": {}, "passkey": {}, "seconds": 0.0})
        m["seconds"] += rec.get("seconds", 0.0) + rec.get("prefix_seconds", 0.0)
        if "peak_gib" in rec:
            m["peak_gib"] = max(m.get("peak_gib", 0.0), rec["peak_gib"])
        if spec["kind"] == "ppl":
            m["ppl"].setdefault(str(spec["length"]), []).append(rec)
        else:
            m["passkey"].setdefault(f"{spec['length']}|{spec['depth']:g}", []).append(rec)
    for m in methods.values():
        m["ppl"] = {n: summarize_perplexity(recs) for n, recs in m["ppl"].items()}
        for cell_key, recs in m["passkey"].items():
            correct = sum(int(r["correct"]) for r in recs)
            lo, hi = wilson_interval(correct, len(recs))
            lp, lp_lo, lp_hi = bootstrap_mean([r["key_logprob_per_digit"] for r in recs])
            m["passkey"][cell_key] = {
                "correct": correct, "trials": len(recs), "accuracy": correct / len(recs), "lo95": lo, "hi95": hi,
                "logprob_per_digit": lp, "logprob_lo95": lp_lo, "logprob_hi95": lp_hi,
                "key_token_pos": recs[0]["key_token_pos"], "tokens": max(r["tokens"] for r in recs),
            }
    plan = asdict(p.plan)
    plan.pop("extra", None)
    return {"model": plan["model"], "context": p.context, "device": p.device, "plan": plan, "methods": methods}
