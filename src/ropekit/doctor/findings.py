"""The finding codes of ``ropekit doctor`` (stable strings), the :class:`Finding` record and what checks see.

:data:`FINDINGS` maps each code to its severity and one-line explanation (docs/doctor.md lists them with
their fixes); :func:`make` is the only way to build a Finding, so an unregistered code raises. The checks
themselves live in :mod:`ropekit.doctor.checks`.

>>> make("context-uncovered", "hf", ["full_attention"], "16384 > 8192", "add YaRN").severity
'warning'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.plan import RopePlan
from ropekit.core.scaling import NTK, DynamicNTK, Linear, LongRoPE, Proportional
from ropekit.doctor.engines import EngineView
from ropekit.doctor.sources import Deployment

__all__ = ["FINDINGS", "PPL_QUOTE", "SEVERITIES", "CheckContext", "Finding", "FindingSpec", "covered_context", "make"]

SEVERITIES = ("error", "warning", "info")
#: the README's measurement, quoted whenever a context runs past what its RoPE covers.
PPL_QUOTE = ("SmolLM2-135M's perplexity goes from ~7 to ~690 at 1.5-2x its 8192-token context "
             "(README, experiments/LOG.md)")


@dataclass(frozen=True, kw_only=True)
class FindingSpec:
    """One finding code."""

    code: str  # stable identifier, used by CI pipelines
    severity: str  # "error" | "warning" | "info"; exit status 1 on any error or warning
    explanation: str  # one line: what is wrong and what it does to the model


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One finding about one engine (or the checkpoint itself: engine ``"config"``)."""

    code: str  # a key of FINDINGS
    severity: str  # copied from FINDINGS
    engine: str  # "hf" | "vllm" | "llama.cpp" | "config" | "hf (live)"
    layer_types: tuple[str, ...]  # the layer types concerned
    message: str  # what was seen, with the numbers
    fix: str  # the exact key or flag to set

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "engine": self.engine,
                "layer_types": list(self.layer_types), "message": self.message, "fix": self.fix}


_SPECS = [
    ("scaling-not-applied", "error", "the checkpoint declares a RoPE scaling that this engine does not apply"),
    ("legacy-key-ignored", "error", "a RoPE key this engine does not read carries the value (v4 vs v5 layout)"),
    ("legacy-key-conflict", "error", "legacy and new RoPE keys disagree; engines pick different ones"),
    ("theta-missing", "warning", "rope_theta is missing from the checkpoint, so every reader uses its own default"),
    ("theta-defaulted", "error", "this engine does not find rope_theta and uses a default base instead"),
    ("base-mismatch", "error", "this engine rotates with a different base than the checkpoint"),
    ("factor-inconsistent", "warning", "the scaling factor disagrees with max_position_embeddings / L0"),
    ("context-uncovered", "warning", "the target context passes the trained context and no scaling covers it"),
    ("gguf-missing-scaling", "error", "the GGUF lacks the scaling keys of its HF config: llama.cpp runs unscaled"),
    ("layout-mismatch", "error", "the engine pairs channels differently from how the weights were trained"),
    ("layer-type-mismatch", "error", "layer types are scaled differently from the checkpoint (sliding vs global)"),
    ("longrope-switch", "warning", "LongRoPE switches short/long factors at a different point than HF"),
    ("dynamic-as-static", "warning", "dynamic NTK runs as a fixed base, which also changes short sequences"),
    ("partial-rotary-dropped", "error", "the engine rotates a different number of channels (partial rotary lost)"),
    ("fp32-angle-error", "info", "angles formed in float32 are off by more than 1e-3 rad at the target context"),
    ("scaling-overridden", "info", "the deployment flags replace the checkpoint's scaling (deliberately?)"),
    ("engine-differs", "warning", "the engine's cos/sin differ from the reference beyond 1e-3"),
    ("engine-rejects", "error", "the engine cannot read this RoPE configuration and would refuse to load it"),
    ("live-mismatch", "error", "the loaded model's rotary modules compute something else than its config says"),
]
#: code -> spec, the registry every finding comes from (unknown codes raise).
FINDINGS: dict[str, FindingSpec] = {c: FindingSpec(code=c, severity=s, explanation=e) for c, s, e in _SPECS}


def make(code: str, engine: str, layer_types: tuple[str, ...] | list[str], message: str, fix: str) -> Finding:
    """A :class:`Finding` of a registered ``code`` (severity from the registry)."""
    if code not in FINDINGS:
        raise ValueError(f"unknown finding code {code!r}; known: {sorted(FINDINGS)}.")
    return Finding(code=code, severity=FINDINGS[code].severity, engine=engine, layer_types=tuple(layer_types),
                   message=message, fix=fix)


@dataclass(frozen=True, kw_only=True)
class CheckContext:
    """Everything the checks look at."""

    dep: Deployment  # the checkpoint and flags
    reference: RopePlan  # ropekit's reading of the checkpoint
    views: Mapping[str, EngineView]  # engine -> what it runs
    target: int  # positions 0..target-1 are checked
    distances: Mapping[tuple[str, str], Mapping[str, Any]]  # (engine, layer type) -> config_distance
    fp32: Mapping[tuple[str, str], float]  # (engine, layer type) -> fp32 angle error at the engine's context


def covered_context(cfg: RopeConfig) -> float:
    """The longest context ``cfg``'s RoPE is meant for: the trained context times the scaling's factor."""
    sc, mp = cfg.scaling, cfg.max_position_embeddings
    L0 = cfg.original_max_position_embeddings or mp
    if sc is None:
        return float(mp or math.inf)
    if isinstance(sc, DynamicNTK):
        return math.inf  # the base grows with the sequence
    factor = getattr(sc, "factor", None) or getattr(sc, "alpha", None) or 1.0
    if isinstance(sc, (Linear, NTK, Proportional)):
        return float(mp * factor) if mp else math.inf
    if isinstance(sc, LongRoPE) and sc.factor is None:
        return float(mp or math.inf)
    return max(float(mp or 0), float(L0 or 0) * factor) or math.inf


def rotating(plan: RopePlan) -> dict[str, RopeConfig]:
    return {t: plan.by_type[t] for t in plan.rope_types}  # type: ignore[misc]
