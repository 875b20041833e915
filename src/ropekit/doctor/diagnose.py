"""Run every check on a deployment: :func:`diagnose` returns a :class:`Diagnosis` (findings + engine table).

>>> from ropekit.doctor import Deployment, diagnose
>>> dep = Deployment(hf_config={"model_type": "llama", "hidden_size": 256, "num_attention_heads": 4,
...     "num_hidden_layers": 2, "max_position_embeddings": 8192,
...     "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0}})
>>> diagnose(dep, engines=("hf",), context=16384).codes()
['context-uncovered']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ropekit.core.plan import RopePlan
from ropekit.doctor.checks import CHECKS
from ropekit.doctor.distance import config_distance, fp32_angle_error
from ropekit.doctor.engines import ENGINES, EngineView, read_engine, reference_plan, target_context
from ropekit.doctor.findings import CheckContext, Finding, covered_context
from ropekit.doctor.sources import Deployment

__all__ = ["Diagnosis", "diagnose", "engine_rows"]


@dataclass(frozen=True, kw_only=True)
class Diagnosis:
    """The result of :func:`diagnose`."""

    reference: RopePlan  # ropekit's reading of the checkpoint
    target: int  # the checked context
    views: dict[str, EngineView]  # engine -> what it runs
    distances: dict[tuple[str, str], dict[str, Any]]  # (engine, layer type) -> distance to the reference
    fp32: dict[tuple[str, str], float]  # (engine, layer type) -> float32 angle error at its context
    findings: tuple[Finding, ...]  # everything found, most severe first

    @property
    def exit_status(self) -> int:
        """0 clean, 1 at least one warning or error finding."""
        return int(any(f.severity in ("error", "warning") for f in self.findings))

    def codes(self) -> list[str]:
        return sorted({f.code for f in self.findings})


def _engines(engines: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(engines, str):
        engines = ENGINES if engines == "all" else (engines,)
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        raise ValueError(f"engine must be one of {[*ENGINES, 'all']}, got {list(engines)!r}.")
    return tuple(dict.fromkeys(engines))


def diagnose(dep: Deployment, *, engines: Sequence[str] | str = "all", context: int | None = None) -> Diagnosis:
    """Check ``dep`` for ``engines`` at ``context`` (default: the checkpoint's max positions).

    Raises ``ValueError`` / ``TypeError`` (with a message) for input that cannot be read; everything an
    engine would get wrong is a finding instead.
    """
    if not isinstance(dep, Deployment):
        raise TypeError(f"dep must be a ropekit.doctor.Deployment, got {type(dep).__name__}.")
    try:
        return _diagnose(dep, engines, context)
    except (ArithmeticError, LookupError, AttributeError) as exc:  # malformed values deep in a reader
        raise ValueError(f"cannot read this deployment's RoPE: {type(exc).__name__}: {exc}") from None


def _diagnose(dep: Deployment, engines: Sequence[str] | str, context: int | None) -> Diagnosis:
    names = _engines(engines)
    ref = reference_plan(dep)
    target = target_context(dep, ref, context)
    views = {e: read_engine(e, dep, target) for e in names}
    if context is not None:  # an explicit target is what every engine must serve
        views = {e: v if v.context >= target else _with_context(v, target) for e, v in views.items()}
    distances: dict[tuple[str, str], dict[str, Any]] = {}
    fp32: dict[tuple[str, str], float] = {}
    for e, v in views.items():
        if v.plan is None:
            continue
        for t in ref.rope_types:
            r, x = ref.by_type[t], v.plan.by_type.get(t)
            if r is None or x is None:
                continue
            distances[(e, t)] = config_distance(r, "hf", x, v.compat, v.context, engine_context=v.context)
            fp32[(e, t)] = fp32_angle_error(x, v.compat, v.context, engine_context=v.context)
    ctx = CheckContext(dep=dep, reference=ref, views=views, target=target, distances=distances, fp32=fp32)
    found: list[Finding] = []
    for check in CHECKS.values():
        found.extend(check(ctx, list(found)))
    order = {"error": 0, "warning": 1, "info": 2}
    found.sort(key=lambda f: (order[f.severity], f.engine, f.code))
    return Diagnosis(reference=ref, target=target, views=views, distances=distances, fp32=fp32,
                     findings=tuple(found))


def _with_context(v: EngineView, target: int) -> EngineView:
    import dataclasses

    return dataclasses.replace(v, context=target)


def _switch(cfg: Any, engine: str, context: int) -> str | None:
    sc = cfg.scaling
    if sc is None or not sc.depends_on_seq_len:
        return None
    L0 = sc.original_max_position_embeddings
    if engine == "hf":
        what = "long factors" if sc.method == "longrope" else "base grows"
        return f"per sequence: {what} from length {L0 + 1}"
    if sc.method == "longrope":
        return f"once from the context {context}: {'long' if context > L0 else 'short'} factors for every sequence"
    return f"fixed at length {L0} * {getattr(sc, 'factor', '?')}"


def engine_rows(diag: Diagnosis) -> dict[str, Any]:
    """The JSON ``engines`` section: per engine, per layer type, the RoPE it runs and its distances."""
    out: dict[str, Any] = {}
    for e, v in diag.views.items():
        entry: dict[str, Any] = {"context": v.context, "max_positions": v.max_positions, "compat": v.compat,
                                 "layout_from": v.layout_from, "rejected": v.rejected, "layer_types": {}}
        if v.plan is not None:
            for row in v.plan.describe():
                t, rope = row["layer_type"], row["rope"]
                cfg = v.plan.by_type[t]
                item = {"layers": row["layers"], "rotating_layers": [i for i in row["layers"]
                                                                     if i not in row["nope_layers"]],
                        "rope": rope}
                if cfg is not None and rope is not None:
                    item["switch"] = _switch(cfg, e, v.context)
                    cover = covered_context(cfg)
                    item["covered_context"] = None if cover == float("inf") else int(cover)
                    item["distance"] = diag.distances.get((e, t))
                    item["fp32_angle_error"] = diag.fp32.get((e, t))
                entry["layer_types"][t] = item
        out[e] = entry
    return out
