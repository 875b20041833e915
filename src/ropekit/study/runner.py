"""The study: train every (encoding, seed) at length L, evaluate at 1x..8x L, aggregate with paired CIs.

Layout of ``out_dir``::

    runs/<encoding>-seed<k>/model.pt    checkpoint (atomic; resumed mid-training; "done" when finished)
    runs/<encoding>-seed<k>/eval.json   per-unit NLLs per eval variant (atomic; finished variants skipped)
    results.json, results.md, study.png written at the end from the per-run files

Adding encodings, seeds, scalings or extensions to a finished study reuses every finished run (the per-run
checkpoint and eval fingerprints still refuse any other change).

Eval variants: ``"none"`` for every model; for the rotary runs (:data:`ROTARY_RUNS`: RoPE, p-RoPE and the
hybrid ``rope-nope4``, whose RoPE layers are scaled and NoPE layers left alone) also each eval-time scaling
(``ropekit.scaling_from_factor(method, factor, original_max_position_embeddings=L)``), at factor C / L for
context C (or a fixed ``scale_factor``); for full-RoPE rotary runs (not p-RoPE) also each training-free
extension of :mod:`ropekit.extension` (Self-Extend, DCA, ReRoPE, leaky ReRoPE, dynamic YaRN) with the
per-context settings of :mod:`ropekit.study.extensions`. Both run on ``scaled_protocols`` only.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ropekit.core.validation import check_choice
from ropekit.study.distributed import Dist
from ropekit.study.encodings import ENCODINGS, EVAL_SCALINGS, Rotary
from ropekit.study.extensions import EXTENSION_VARIANTS, study_extension
from ropekit.study.io import read_json, write_json

__all__ = ["EXTENDABLE_RUNS", "ROTARY_RUNS", "RUN_NAMES", "StudyConfig", "run_study"]

#: trainable run names: the encodings plus "p-rope" (RoPE keeping the fraction ``p_rope`` of frequencies)
RUN_NAMES: tuple[str, ...] = (*ENCODINGS, "p-rope")
#: runs whose model has RoPE layers, so the eval-time scalings apply
ROTARY_RUNS: tuple[str, ...] = ("rope", "rope-nope4", "p-rope")
#: rotary runs with full RoPE, where the training-free extensions apply
EXTENDABLE_RUNS: tuple[str, ...] = ("rope", "rope-nope4")


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; ``out_dir`` files are only reused when this matches."""

    encodings: tuple[str, ...] = ("nope", "learned", "sinusoidal", "alibi", "rope", "rope-nope4")
    seeds: tuple[int, ...] = (0, 1, 2)
    train_len: int = 128
    multiples: tuple[int, ...] = (1, 2, 4, 8)
    scalings: tuple[str, ...] = ("linear", "ntk", "dynamic", "yarn")
    # training-free extensions (ropekit.extension) evaluated on the full-RoPE runs
    extensions: tuple[str, ...] = EXTENSION_VARIANTS
    scale_factor: float | None = None  # None: factor = C / L at each context C
    scaled_protocols: tuple[str, ...] = ("same_target", "nonoverlap", "sliding")
    p_rope: float = 0.75
    # model
    d_model: int = 96
    n_layers: int = 3
    n_heads: int = 4
    n_kv_heads: int | None = None
    rope_base: float = 10000.0
    # training
    steps: int = 600
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 60
    # evaluation
    target: int = 32
    n_windows: int = 96
    n_blocks: int = 8
    n_regions: int = 8
    region_len: int = 128
    stride: int = 64
    n_boot: int = 2000
    heldout_percent: float = 10.0
    batch_tokens: int = 8192
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for e in self.encodings:
            check_choice("encodings", e, RUN_NAMES)
        for s in self.scalings:
            check_choice("scalings", s, [m for m in EVAL_SCALINGS if m != "none"])
        for x in self.extensions:
            check_choice("extensions", x, EXTENSION_VARIANTS)
        if not self.seeds:
            raise ValueError("seeds must name at least one seed.")
        for e in self.encodings:
            _model_config(self, e)  # fail before any training (e.g. rope-nope4 with n_layers=1)

    @property
    def contexts(self) -> tuple[int, ...]:
        return tuple(m * self.train_len for m in self.multiples)


def _model_config(cfg: StudyConfig, name: str):  # -> ModelConfig
    from ropekit.study.model import ModelConfig

    return ModelConfig(
        d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
        encoding="rope" if name == "p-rope" else name, train_len=cfg.train_len, max_len=max(cfg.contexts),
        rope_base=cfg.rope_base, rope_fraction=cfg.p_rope if name == "p-rope" else 1.0,
        # pure-torch rotation, not "auto": auto takes the optional C kernel once it is built, which rounds
        # differently in the last bits (training amplifies that); a study must not depend on a compiler being
        # present. Costs ~5% of a training step here.
        rope_backend="reference",
    )


def _train_config(cfg: StudyConfig, seed: int):  # -> TrainConfig
    from ropekit.study.train import TrainConfig

    return TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup=min(cfg.warmup, cfg.steps),
                       seed=seed, ckpt_every=max(1, cfg.steps // 4))


def _plan(cfg: StudyConfig, n_tokens: int):
    from ropekit.study.protocol import make_span_plan

    return make_span_plan(n_tokens, cfg.contexts, target=cfg.target, n_windows=cfg.n_windows, n_blocks=cfg.n_blocks,
                     n_regions=cfg.n_regions, region_len=cfg.region_len, stride=cfg.stride)


def _eval_fingerprint(cfg: StudyConfig, n_tokens: int) -> dict[str, Any]:
    keys = ("train_len", "multiples", "target", "n_windows", "n_blocks", "n_regions", "region_len", "stride",
            "heldout_percent", "scale_factor")
    return _jsonable({"heldout_tokens": n_tokens, **{k: getattr(cfg, k) for k in keys}})


def _variants(cfg: StudyConfig, name: str) -> list[str]:
    if name not in ROTARY_RUNS:
        return ["none"]
    return ["none", *cfg.scalings, *(cfg.extensions if name in EXTENDABLE_RUNS else ())]


def run_study(cfg: StudyConfig, out_dir: str | Path, *, dist: Dist | None = None, progress: bool = True,
              root: str | None = None) -> dict[str, Any]:
    """Train and evaluate every run (skipping finished work), then aggregate; returns the results dict."""
    import torch
    from tqdm.auto import tqdm

    from ropekit.study.aggregate import aggregate
    from ropekit.study.data import load_corpus
    from ropekit.study.protocol import SpanPlan, evaluate_span_plan
    from ropekit.study.train import train

    dist = dist or Dist()
    out = Path(out_dir)
    t0 = time.time()
    corpus = load_corpus(root, heldout_percent=cfg.heldout_percent)
    stream = corpus.heldout
    plan = _plan(cfg, stream.numel())
    fp = _eval_fingerprint(cfg, stream.numel())
    saved_cfg = read_json(out / "study_config.json")
    if saved_cfg is not None and _shared(saved_cfg) != _shared(_jsonable(asdict(cfg))):
        raise ValueError(f"out_dir={str(out)!r} holds a study with other settings; pick a fresh --out.")
    if dist.is_main:
        write_json(_jsonable(asdict(cfg)), out / "study_config.json")
    runs = [(name, seed) for name in cfg.encodings for seed in cfg.seeds]
    timings: dict[str, Any] = read_json(out / "timings.json") or {}
    bar = tqdm(runs, desc="study", disable=not (progress and dist.is_main), leave=True)
    for name, seed in bar:
        run_id = f"{name}-seed{seed}"
        bar.set_postfix(run=run_id, refresh=True)
        run_dir = out / "runs" / run_id
        saved = read_json(run_dir / "eval.json") or {"fingerprint": fp, "variants": {}}
        if saved["fingerprint"] != fp:
            raise ValueError(f"{run_dir / 'eval.json'} was evaluated with other settings; pick a fresh --out.")
        todo = [v for v in _variants(cfg, name) if v not in saved["variants"]]
        grown = bool(saved["variants"])
        if not todo:
            continue
        t_train = time.time()
        model, state = train(_model_config(cfg, name), _train_config(cfg, seed), corpus.train, run_dir / "model.pt",
                             dist=dist, progress=progress, desc=f"train {run_id}")
        model.eval()
        t_eval = time.time()
        for variant in todo:
            protos = plan.spans if variant == "none" else {p: plan.spans[p] for p in cfg.scaled_protocols}
            sub = SpanPlan(plan.contexts, protos, {p: plan.n_units[p] for p in protos})
            hook = None
            enc = model.encoding
            if variant in EXTENSION_VARIANTS:
                assert isinstance(enc, Rotary)

                def hook(c: int, enc: Rotary = enc, variant: str = variant) -> None:
                    enc.set_extension(study_extension(variant, c, cfg.train_len))
            elif variant != "none":
                assert isinstance(enc, Rotary)

                def hook(c: int, enc: Rotary = enc, variant: str = variant) -> None:
                    enc.set_scaling(variant, cfg.scale_factor or c / cfg.train_len)
            with torch.no_grad():
                res = evaluate_span_plan(model, stream, sub, dist=dist, batch_tokens=cfg.batch_tokens,
                                         before_context=hook)
            if isinstance(enc, Rotary):
                enc.set_extension(None)
                enc.set_scaling("none")
            saved["variants"][variant] = {p: {str(c): v for c, v in d.items()} for p, d in res.items()}
            if dist.is_main:
                write_json(saved, run_dir / "eval.json")
            dist.barrier()
        # summed over invocations of the same run (its eval.json already held variants): a study grown by
        # new variants adds their eval time; a run started afresh starts its timing afresh
        before = timings.get(run_id, {}) if grown else {}
        timings[run_id] = {"train_s": round(before.get("train_s", 0.0) + t_eval - t_train, 1),
                           "eval_s": round(before.get("eval_s", 0.0) + time.time() - t_eval, 1),
                           "final_train_loss": state["losses"][-1][1] if state["losses"] else None}
        if dist.is_main:
            write_json(timings, out / "timings.json")
    results = aggregate(cfg, out, n_heldout=stream.numel())
    results["wall_s_this_invocation"] = round(time.time() - t0, 1)
    results["corpus"] = {"root": corpus.root, "train_files": len(corpus.train_files),
                         "heldout_files": len(corpus.heldout_files), "train_tokens": corpus.train.numel(),
                         "heldout_tokens": stream.numel()}
    results["timings"] = timings
    if dist.is_main:
        from ropekit.study.report import write_reports

        write_reports(results, out)
    dist.barrier()
    return results


#: settings that only choose WHICH runs / variants exist: a study can grow by more of them and reuse the rest
_GROWABLE = ("encodings", "seeds", "scalings", "extensions")


def _shared(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in _GROWABLE}


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(d))
