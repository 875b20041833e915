"""What each engine effectively runs for a :class:`~ropekit.doctor.sources.Deployment`, per layer type.

One reader per engine turns the checkpoint plus that engine's flags into an :class:`EngineView`: a
:class:`~ropekit.core.plan.RopePlan` (the RoPE it computes), the ``compat=`` mode that reproduces its
frequency quirks (:mod:`ropekit.interop.compat`), its configured context, and ``facts``: what the reader saw
happen on the way (a key it ignored, a default it fell back to), which :mod:`ropekit.doctor.findings` turns
into findings. The reference is :func:`reference_plan`: ropekit's reading of the checkpoint as shipped.

- ``hf``: transformers' own config classes standardize the dict (v5: ``rope_parameters``; a legacy
  ``rope_scaling`` given beside it replaces it), and each layer type reads its nested entry when there is
  one; ``hf_version=4`` emulates v4, which reads only ``rope_scaling`` / top-level ``rope_theta``.
- ``vllm``: the same standardized config, then ``get_rope`` semantics (:func:`ropekit.interop.from_vllm`):
  dynamic NTK frozen at L0 * s, LongRoPE factors picked once from ``max_model_len``.
- ``llama.cpp``: the GGUF's metadata (or what the converter writes from the HF config), then the flags;
  Gemma-3's sliding layers use ``rope.freq_base_swa`` (10000) and no scaling; SmolLM3 / Llama-4 skip RoPE on
  every 4th layer.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.plan import RopePlan
from ropekit.doctor.sources import Deployment
from ropekit.interop.hf import INTERLEAVED_MODEL_TYPES
from ropekit.interop.hf_plan import DEFAULT_LAYER_TYPE, plan_from_hf, text_config

__all__ = ["ENGINES", "READERS", "EngineView", "read_engine", "reference_plan", "target_context"]

ENGINES = ("hf", "vllm", "llama.cpp")
_SWA_TYPE = "sliding_attention"
_NOPE_EVERY_4 = ("smollm3", "llama4")  # llama.cpp: every 4th layer skips RoPE (no GGUF key says so)


@dataclass(frozen=True, kw_only=True)
class EngineView:
    """The RoPE one engine runs, per layer type."""

    engine: str  # one of ENGINES
    plan: RopePlan | None  # what it computes (None: it refuses this config; see `rejected`)
    compat: str  # ropekit compat mode reproducing its frequency quirks
    context: int  # positions 0..context-1 it is configured for (max_model_len, -c, else the target)
    max_positions: int | None  # the longest context it accepts without overrides
    facts: Mapping[str, str] = field(default_factory=dict)  # reader events -> detail, for the checks
    rejected: str | None = None  # why the engine refuses the config (a finding, not an exception)
    layout_from: str = ""  # where the pair layout comes from (model code, is_neox_style, GGUF arch)


def _installed_hf_major() -> int:
    try:
        from importlib.metadata import version

        return int(version("transformers").split(".")[0])
    except Exception:  # transformers absent or an odd version string: assume current semantics
        return 5


def _text(d: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(text_config(d)))


def _merged(dep: Deployment, extra: Mapping[str, Any] = ()) -> dict[str, Any]:
    """The text config with ``hf_overrides`` (and ``extra``) replacing top-level keys, as vLLM's does."""
    assert dep.hf_config is not None
    d = _text(dep.hf_config)
    d.update(copy.deepcopy(dict(dep.hf_overrides)))
    d.update(copy.deepcopy(dict(extra)))
    return d


def _has_theta(d: Mapping[str, Any]) -> bool:
    params = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if not isinstance(params, Mapping):
        return d.get("rope_theta") is not None
    entries = [v for v in params.values() if isinstance(v, Mapping)] or [params]
    return d.get("rope_theta") is not None or all(e.get("rope_theta") is not None for e in entries)


# -- reference --------------------------------------------------------------------------------------------
def reference_plan(dep: Deployment) -> RopePlan:
    """ropekit's reading of the checkpoint as shipped: its HF config, else (or when that config was only
    derived from the GGUF) the GGUF. Raises ``ValueError`` / ``TypeError`` for configs that cannot be read."""
    if dep.hf_config is not None and not dep.hf_derived:
        return plan_from_hf(text_config(dep.hf_config))
    plan = _gguf_plan(dep)
    # the reference describes the HF-side weights: transformers' GGUF loader (and the converter, the other
    # way) permutes NORM-mode q/k back to HF's half layout, so only llama.cpp's view carries the arch's mode
    by_type = {t: None if c is None else c.replace(layout="half") for t, c in plan.by_type.items()}
    return dataclasses.replace(plan, by_type=by_type)


def target_context(dep: Deployment, plan: RopePlan, context: int | None) -> int:
    """``context`` when given, else the checkpoint's configured maximum (max over layer types)."""
    if context is not None:
        if isinstance(context, bool) or not isinstance(context, int) or context < 2:
            raise ValueError(f"context must be an int >= 2, got {context!r}.")
        return context
    known = [c.max_position_embeddings for c in plan.by_type.values() if c is not None and c.max_position_embeddings]
    if not known:
        raise ValueError("the checkpoint names no max_position_embeddings / context_length; pass --context N.")
    return max(known)


# -- hf ---------------------------------------------------------------------------------------------------
def _hf5_params(d: dict[str, Any]) -> tuple[Any, str]:
    """``config.rope_parameters`` after transformers v5 standardizes ``d``, and how it was obtained."""
    try:
        from transformers import AutoConfig

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)  # transformers logs every legacy key; the findings say it better
            try:
                cfg = AutoConfig.for_model(d["model_type"], **{k: v for k, v in d.items() if k != "model_type"})
            finally:
                logging.disable(logging.NOTSET)
        return copy.deepcopy(cfg.rope_parameters), "transformers"
    except Exception:  # unknown model_type / transformers refuses: emulate its rules instead
        params = copy.deepcopy(d.get("rope_scaling") or d.get("rope_parameters") or {})
        if not isinstance(params, dict):
            raise TypeError(f"rope_parameters/rope_scaling must be a dict, got {type(params).__name__}.") from None
        entries = [v for v in params.values() if isinstance(v, dict)] or [params]
        for e in entries:
            e.setdefault("rope_type", e.get("type", "default"))
            e.setdefault("rope_theta", d.get("rope_theta", 10000.0))
            if d.get("partial_rotary_factor") is not None:
                e.setdefault("partial_rotary_factor", d["partial_rotary_factor"])
        return params, "emulated"


def _per_type(params: Any, layer_types: list[str]) -> Any:
    """What each layer type's rotary module reads: its nested entry when there is one, else the flat dict."""
    if isinstance(params, Mapping) and any(isinstance(params.get(t), Mapping) or
                                           (t in params and params[t] is None) for t in layer_types):
        return {t: params.get(t) for t in dict.fromkeys(layer_types)}
    return params


def _hf_facts5(d: dict[str, Any]) -> dict[str, str]:
    facts: dict[str, str] = {}
    rs, rp = d.get("rope_scaling"), d.get("rope_parameters")
    if rs and rp and rs != rp:
        facts["legacy_wins"] = f"rope_scaling={rs!r:.120} replaces rope_parameters={rp!r:.120}"
    if not _has_theta(d):
        facts["theta_defaulted"] = "no rope_theta in rope_parameters / rope_scaling nor at the top level"
    return facts


def _hf4_dict(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """What transformers v4 reads: top-level rope_theta / partial_rotary_factor and rope_scaling only."""
    facts: dict[str, str] = {}
    rp = d.get("rope_parameters")
    theta = d.get("rope_theta")
    if theta is None:
        facts["theta_defaulted"] = "transformers v4 reads only the top-level rope_theta, which is missing"
    if rp:
        facts["rope_parameters_ignored"] = f"rope_parameters={rp!r:.160}"
    rs = dict(d.get("rope_scaling") or {})
    if rs:
        rs.setdefault("rope_type", rs.get("type", "default"))
    out = {k: v for k, v in d.items() if k not in ("rope_parameters", "rope_scaling", "rope_theta")}
    if str(d.get("model_type", "")).startswith("gemma3"):  # v4 Gemma-3: local base + global scaling, by key
        glob = {**(rs or {"rope_type": "default"}), "rope_theta": theta if theta is not None else 1e6}
        out["rope_parameters"] = {_SWA_TYPE: {"rope_type": "default",
                                              "rope_theta": d.get("rope_local_base_freq", 10000.0)},
                                  "full_attention": glob}
    else:
        out["rope_parameters"] = {**(rs or {"rope_type": "default"}), "rope_theta": theta or 10000.0}
    if not d.get("partial_rotary_factor") and isinstance(rp, Mapping) and rp.get("partial_rotary_factor"):
        facts["partial_dropped"] = "partial_rotary_factor sits in rope_parameters, which transformers v4 ignores"
    return out, facts


def _hf_view(dep: Deployment, target: int) -> EngineView:
    d = _merged(dep)
    version = dep.hf_version or _installed_hf_major()
    if version >= 5:
        facts = _hf_facts5(d)
        params, how = _hf5_params(d)
        eff = {k: v for k, v in d.items() if k not in ("rope_scaling", "rope_theta", "partial_rotary_factor")}
        eff["rope_parameters"] = _per_type(params, list(d.get("layer_types") or [DEFAULT_LAYER_TYPE]))
        facts["standardized_by"] = how
    else:
        eff, facts = _hf4_dict(d)
    if dep.hf_derived and dep.gguf is not None:
        arch = dep.gguf.get("general.architecture")
        stype = dep.gguf.get(f"{arch}.rope.scaling.type")
        if stype not in (None, "none") and arch != "gpt-oss":
            facts["gguf_loader_drops_scaling"] = f"{arch}.rope.scaling.type={stype!r}"
    layout = "model_type " + str(d.get("model_type"))
    return _view("hf", lambda: plan_from_hf(eff), "hf", target, d.get("max_position_embeddings"), facts, layout)


def _view(engine: str, build: Callable[[], RopePlan], compat: str, context: int, max_pos: Any,
          facts: dict[str, str], layout_from: str) -> EngineView:
    try:
        plan, rejected = build(), None
    except (ValueError, TypeError, KeyError) as exc:  # the engine would refuse this config at load
        plan, rejected = None, f"{type(exc).__name__}: {exc}"
    mp = max_pos if isinstance(max_pos, int) and not isinstance(max_pos, bool) else None
    return EngineView(engine=engine, plan=plan, compat=compat, context=context, max_positions=mp, facts=facts,
                      rejected=rejected, layout_from=layout_from)


# -- vllm -------------------------------------------------------------------------------------------------
def _vllm_derived_max(d: Mapping[str, Any], rs: Any) -> int | None:
    """vLLM's derived max_model_len: max_position_embeddings, times the factor of YaRN-like scalings."""
    mp = d.get("max_position_embeddings")
    if not isinstance(mp, int) or isinstance(mp, bool):
        return None
    entries = [v for v in rs.values() if isinstance(v, Mapping)] if isinstance(rs, Mapping) else []
    rs = (entries[-1] if entries else rs) or {}
    rt = rs.get("rope_type", rs.get("type"))
    if rt in (None, "default", "su", "longrope", "llama3", "mrope") or not isinstance(rs.get("factor"), (int, float)):
        return mp
    if rt == "yarn" and isinstance(rs.get("original_max_position_embeddings"), int):
        mp = rs["original_max_position_embeddings"]
    return int(mp * rs["factor"])


def _vllm_view(dep: Deployment, target: int) -> EngineView:
    va = dict(dep.vllm_args)
    extra = dict(va.get("hf_overrides") or {})
    for key in ("rope_scaling", "rope_theta"):  # vLLM < 0.11 took these as engine args (now --hf-overrides)
        if key in va:
            extra[key] = va[key]
    d = _merged(dep, extra)
    facts = _hf_facts5(d)
    params, _ = _hf5_params(d)
    types = list(d.get("layer_types") or [DEFAULT_LAYER_TYPE])
    per = _per_type(params, types)
    derived = _vllm_derived_max(d, params)
    mml = va.get("max_model_len", derived if derived is not None else target)
    if isinstance(mml, bool) or not isinstance(mml, int) or mml < 1:
        raise ValueError(f"vllm_args max_model_len must be a positive int, got {mml!r}.")
    if derived is not None and mml > derived:
        facts["max_model_len_over"] = f"max_model_len={mml} > derived {derived}"
    neox = va.get("is_neox_style")
    if neox is not None and not isinstance(neox, bool):
        raise TypeError(f"vllm_args is_neox_style must be true/false, got {neox!r}.")
    base_layout = "interleaved" if d.get("model_type") in INTERLEAVED_MODEL_TYPES else "half"

    def one(entry: Mapping[str, Any] | None) -> RopeConfig | None:
        if entry is None:
            return None
        hf_cfg = plan_from_hf({**{k: v for k, v in d.items() if k not in ("rope_scaling", "layer_types")},
                               "num_hidden_layers": 1, "rope_parameters": dict(entry)}).single()
        from ropekit.interop.vllm import from_vllm

        rs = {k: v for k, v in entry.items() if k not in ("rope_theta", "partial_rotary_factor", "type")}
        rs["rope_type"] = entry.get("rope_type", entry.get("type", "default"))
        cfg = from_vllm({"head_size": hf_cfg.head_dim, "rotary_dim": hf_cfg.rotary_dim,
                         "max_position": d.get("max_position_embeddings"), "base": hf_cfg.base,
                         "is_neox_style": (base_layout == "half") if neox is None else neox, "rope_scaling": rs})
        return cfg

    def build() -> RopePlan:
        plan = plan_from_hf({**d, "rope_parameters": per})  # layer types and NoPE layers as HF reads them
        if isinstance(per, Mapping) and all(isinstance(v, Mapping) or v is None for v in per.values()) and \
                set(per) >= set(plan.types):
            by_type = {t: one(per[t]) for t in plan.types}
        else:
            c = one(per)
            by_type = {t: (None if plan.by_type[t] is None else c) for t in plan.types}
        return dataclasses.replace(plan, by_type=by_type)

    layout = "is_neox_style from vllm_args" if neox is not None else "model code (model_type)"
    view = _view("vllm", build, "vllm", mml, derived, facts, layout)
    return view


# -- llama.cpp (ropekit.doctor.gguf_engine) ---------------------------------------------------------------
def _llama_cpp_view(dep: Deployment, target: int) -> EngineView:
    from ropekit.doctor.gguf_engine import llama_cpp_view

    return llama_cpp_view(dep, target)


def _gguf_plan(dep: Deployment) -> RopePlan:
    from ropekit.doctor.gguf_engine import gguf_plan

    return gguf_plan(dep)


READERS: dict[str, Callable[[Deployment, int], EngineView]] = {
    "hf": _hf_view,
    "vllm": _vllm_view,
    "llama.cpp": _llama_cpp_view,
}


def read_engine(engine: str, dep: Deployment, target: int) -> EngineView:
    """The :class:`EngineView` of ``engine`` for ``dep`` at the target context ``target``.

    >>> from ropekit.doctor.sources import Deployment
    >>> dep = Deployment(hf_config={"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
    ...     "num_hidden_layers": 2, "max_position_embeddings": 4096,
    ...     "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}, "rope_theta": 10000.0})
    >>> read_engine("vllm", dep, 4096).plan.single().method   # vLLM freezes dynamic NTK: static NTK
    'ntk'
    """
    if engine not in READERS:
        raise ValueError(f"engine must be one of {list(READERS)}, got {engine!r}.")
    if engine in ("hf", "vllm") and dep.hf_config is None:
        return EngineView(engine=engine, plan=None, compat=engine, context=target, max_positions=None,
                          rejected="no HF config to read (pass a config.json or a model directory)")
    return READERS[engine](dep, target)

