"""The checks of ``ropekit doctor``: small pure functions ``(CheckContext, found) -> list[Finding]``.

:data:`CHECKS` runs them in order: config-level checks, then specific engine causes (a key an engine
ignores, a GGUF without scaling keys, vLLM's static dynamic NTK, ...), then generic comparisons with the
reference, which stay quiet for an engine and layer type a specific finding already explains (``found``
holds the findings so far). Every finding comes from :func:`ropekit.doctor.findings.make`.

>>> sorted(CHECKS)[:3]
['base', 'context', 'distance']
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping

from ropekit.core.config import RopeConfig
from ropekit.core.plan import RopePlan
from ropekit.core.scaling import NTK, DynamicNTK, Linear, Llama3, LongRoPE, YaRN
from ropekit.doctor.engines import EngineView
from ropekit.doctor.findings import PPL_QUOTE, CheckContext, Finding, covered_context, make
from ropekit.doctor.findings import rotating as _rotating
from ropekit.interop.hf_plan import text_config

__all__ = ["CHECKS"]


def _suggest_yarn(cfg: RopeConfig, context: int) -> tuple[str, str]:
    """(HF override JSON, llama.cpp flags) for YaRN covering ``context`` from ``cfg``'s trained context."""
    L0 = int(cfg.original_max_position_embeddings or cfg.max_position_embeddings or context)
    factor = math.ceil(context / L0 * 100) / 100
    fixed = cfg.replace(scaling=YaRN(factor=factor, original_max_position_embeddings=L0))
    hf = json.dumps({"rope_parameters": {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": L0,
                                         "rope_theta": cfg.base}})
    return hf, " ".join(_llama_args(fixed))


def _llama_args(cfg: RopeConfig) -> list[str]:
    from ropekit.interop.llama_cpp import to_llama_cpp_args

    try:
        return to_llama_cpp_args(cfg)
    except ValueError as exc:
        return [f"(no llama.cpp flags: {exc})"]


def _views(ctx: CheckContext) -> list[tuple[str, EngineView, RopePlan]]:
    return [(e, v, v.plan) for e, v in ctx.views.items() if v.plan is not None]


def _pairs(ctx: CheckContext) -> list[tuple[str, EngineView, str, RopeConfig | None, RopeConfig | None]]:
    """(engine, view, layer type, reference config, engine config) for every type of the reference."""
    out = []
    for e, v, plan in _views(ctx):
        for t in ctx.reference.types:
            out.append((e, v, t, ctx.reference.by_type.get(t), plan.by_type.get(t)))
    return out


def _explained(found: list[Finding], engine: str, t: str) -> bool:
    return any(f.engine == engine and t in f.layer_types and f.severity != "info" for f in found)


# -- config-level checks ---------------------------------------------------------------------------------
def check_rejects(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    return [make("engine-rejects", e, ctx.reference.types, f"{e} cannot read this config: {v.rejected}",
                 "write the RoPE keys in the form this engine reads (docs/dialects.md)")
            for e, v in ctx.views.items() if v.rejected is not None]


def check_theta_missing(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    if ctx.dep.hf_config is None or ctx.dep.hf_derived:
        return []
    d = text_config(ctx.dep.hf_config)
    params = d.get("rope_parameters") or d.get("rope_scaling") or {}
    entries = {t: p for t, p in params.items() if isinstance(p, Mapping)} if isinstance(params, Mapping) else {}
    entries = entries or {"*": params if isinstance(params, Mapping) else {}}
    missing = [t for t, p in entries.items() if d.get("rope_theta") is None and p.get("rope_theta") is None]
    if not missing:
        return []
    return [make("theta-missing", "config", list(ctx.reference.rope_types), "no rope_theta in rope_parameters nor "
                 "at the top level: transformers uses its class default (10000 for most models), other readers "
                 "their own; the trained base is unknown to all of them",
                 'set "rope_parameters": {"rope_theta": <the trained base>, ...} (and top-level "rope_theta" '
                 "for transformers-v4 readers)")]


def check_legacy_conflict(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    if ctx.dep.hf_config is None or ctx.dep.hf_derived:
        return []
    d = text_config(ctx.dep.hf_config)
    rs, rp, out = d.get("rope_scaling"), d.get("rope_parameters"), []
    if rs and rp and rs != rp:
        out.append(f"rope_scaling={rs!r:.100} and rope_parameters={rp!r:.100} disagree: transformers v5 lets "
                   "rope_scaling replace rope_parameters, readers of rope_parameters (ropekit, TensorRT, MLX) do not")
    flat = rp if isinstance(rp, Mapping) and not any(isinstance(v, Mapping) for v in rp.values()) else None
    theta = d.get("rope_theta")
    if flat and theta is not None and flat.get("rope_theta") is not None and float(flat["rope_theta"]) != float(theta):
        out.append(f"top-level rope_theta={theta} but rope_parameters.rope_theta={flat['rope_theta']}: "
                   "transformers v4 reads the first, v5 the second")
    for name, p in (("rope_scaling", rs), ("rope_parameters", rp)):
        if isinstance(p, Mapping) and p.get("type") and p.get("rope_type") and p["type"] != p["rope_type"]:
            out.append(f"{name} has type={p['type']!r} and rope_type={p['rope_type']!r}: HF reads rope_type, "
                       "older readers type")
    return [make("legacy-key-conflict", "config", list(ctx.reference.rope_types), m,
                 "keep one source of truth: delete rope_scaling / top-level rope_theta / type, or make them equal "
                 "to rope_parameters") for m in out]


def check_factor(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    out = []
    for t, cfg in _rotating(ctx.reference).items():
        sc, mp = cfg.scaling, cfg.max_position_embeddings
        L0 = cfg.original_max_position_embeddings
        if not mp or not L0 or not isinstance(sc, (YaRN, LongRoPE, Llama3)) or getattr(sc, "factor", None) is None:
            continue
        implied = mp / L0
        if isinstance(sc, Llama3):
            bad = mp <= L0
        else:
            bad = not math.isclose(float(sc.factor), implied, rel_tol=1e-3)  # type: ignore[arg-type]
        if bad:
            out.append(make("factor-inconsistent", "config", [t],
                            f"{sc.method} factor={sc.factor} but max_position_embeddings / "
                            f"original_max_position_embeddings = {mp} / {L0} = {implied:.4g}: engines that derive "
                            "the scaled context (vLLM's max_model_len) or the factor from them disagree",
                            f"set max_position_embeddings = original_max_position_embeddings * factor = "
                            f"{int(L0 * float(sc.factor))} (or the factor to {implied:.4g}); "  # type: ignore[arg-type]
                            "original_max_position_embeddings must be the pretraining context"))
    return out


def check_swapped_types(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    rot = _rotating(ctx.reference)
    sliding = [t for t in rot if "sliding" in t and rot[t].scaling is not None]
    unscaled_global = [t for t in rot if "sliding" not in t and rot[t].scaling is None]
    if not sliding or not unscaled_global:
        return []
    return [make("layer-type-mismatch", "config", sliding + unscaled_global,
                 f"the checkpoint scales its sliding layers ({', '.join(sliding)}) but not its global ones "
                 f"({', '.join(unscaled_global)}): sliding layers never see long distances, global layers do",
                 "move the scaling to the global layer type in rope_parameters (e.g. rope_parameters."
                 "full_attention), sliding layers keep rope_type 'default'")]


# -- engine checks, specific ------------------------------------------------------------------------------
def check_reader_facts(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    out = []
    ref_theta = bool(ctx.dep.hf_config) and not any(f.code == "theta-missing" for f in found)
    for e, v, plan in _views(ctx):
        f, types = v.facts, list(ctx.reference.rope_types)
        if "rope_parameters_ignored" in f:
            out.append(make("legacy-key-ignored", e, types, f"transformers v4 ignores {f['rope_parameters_ignored']}",
                            "also write the v4 keys: top-level rope_theta, partial_rotary_factor and rope_scaling "
                            "(ropekit.RopeConfig.to_hf(legacy=True)), or upgrade to transformers >= 5"))
        if "legacy_wins" in f and e != "config":
            out.append(make("legacy-key-ignored", e, types, f"{e}: {f['legacy_wins']} (rope_parameters ignored)",
                            "delete rope_scaling, or make it equal to rope_parameters"))
        if "theta_defaulted" in f and ref_theta:
            got = sorted({c.base for c in _rotating(plan).values()})
            out.append(make("theta-defaulted", e, types, f"{e}: {f['theta_defaulted']}; it rotates with base {got}",
                            "put rope_theta where this engine reads it: inside rope_parameters for transformers v5 "
                            "/ vLLM (an --hf-overrides rope_parameters dict must repeat rope_theta), top-level for "
                            "v4"))
        if "partial_dropped" in f:
            out.append(make("partial-rotary-dropped", e, types, f"{e}: {f['partial_dropped']}",
                            "also write top-level partial_rotary_factor"))
        if "gguf_loader_drops_scaling" in f:
            out.append(make("scaling-not-applied", e, types, f"transformers' GGUF loader ignores "
                            f"{f['gguf_loader_drops_scaling']} for this architecture: from_pretrained(gguf_file=...) "
                            "runs unscaled", "pass the scaling explicitly: from_pretrained(..., rope_parameters={...})"
                            " or ropekit.patch(model, <scaling>)"))
    return out


def check_gguf_missing(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    v = ctx.views.get("llama.cpp")
    dep = ctx.dep
    if v is None or v.plan is None or dep.gguf is None or dep.hf_config is None or dep.hf_derived:
        return []
    arch = dep.gguf.get("general.architecture")
    if dep.gguf.get(f"{arch}.rope.scaling.type") not in (None, "none") or "rope_freqs" in dep.gguf_tensors:
        return []
    out = []
    for t, ref in _rotating(ctx.reference).items():
        eng = v.plan.by_type.get(t)
        if ref.scaling is not None and eng is not None and eng.scaling is None:
            flags = " ".join(_llama_args(ref.replace(layout=eng.layout)))
            out.append(make("gguf-missing-scaling", "llama.cpp", [t],
                            f"the HF config scales {t} with {ref.scaling!r:.140} but the GGUF has no "
                            f"{arch}.rope.scaling.* keys: llama.cpp runs unscaled",
                            f"restore it with these llama.cpp flags: {flags} (or re-convert with a converter that "
                            "writes the scaling keys)"))
    return out


def check_layout(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    from ropekit.interop.gguf import GGUF_ARCH_LAYOUT

    out = []
    for e, v, t, ref, eng in _pairs(ctx):
        if ref is None or eng is None:
            continue
        if e == "llama.cpp":
            mt = str(text_config(ctx.dep.hf_config or {}).get("model_type", "")) if ctx.dep.has_hf else ""
            conv = {"mistral": "llama", "gemma3_text": "gemma3"}.get(mt, mt)
            want, arch = GGUF_ARCH_LAYOUT.get(conv), v.facts.get("arch")
            if want is None or ctx.dep.hf_derived or want == eng.layout:
                continue
            msg = (f"llama.cpp runs GGUF arch {arch!r} in {eng.layout!r} mode, but the converter writes "
                   f"{mt!r} q/k weights for {want!r} mode (arch {conv!r})")
        elif eng.layout != ref.layout:
            msg = f"{e} pairs channels {eng.layout!r} ({v.layout_from}) but the weights are {ref.layout!r}"
        else:
            continue
        out.append(make("layout-mismatch", e, [t], msg, "drop the override (vLLM is_neox_style) or re-convert: "
                        "ropekit.interop.permute_qk(w, n_heads, head_dim, src=..., dst=...) and the matching arch"))
    return out


def check_partial(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    return [make("partial-rotary-dropped", e, [t], f"{e} rotates {eng.rotary_dim} of {eng.head_dim} channels, the "
                 f"checkpoint {ref.rotary_dim} (partial_rotary_factor {ref.partial_rotary_factor:.4g})",
                 f"set partial_rotary_factor={ref.partial_rotary_factor:.6g} where this engine reads it (GGUF: "
                 f"{{arch}}.rope.dimension_count={ref.rotary_dim})")
            for e, v, t, ref, eng in _pairs(ctx)
            if ref is not None and eng is not None and eng.rotary_dim != ref.rotary_dim
            and not _explained(found, e, t)]


def check_dynamic(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    return [make("dynamic-as-static", e, [t], f"{e} evaluates dynamic NTK (factor {ref.scaling.factor}) once at "  # type: ignore[union-attr]
                 f"L0*s: base * {eng.scaling.alpha:g}^(d/(d-2)) for every sequence, also the short ones HF leaves "  # type: ignore[union-attr]
                 "unscaled", "use a static method on purpose (YaRN, or NTK with the alpha you want) so every engine "
                 "agrees; or accept vLLM's static reading")
            for e, v, t, ref, eng in _pairs(ctx)
            if ref is not None and eng is not None and isinstance(ref.scaling, DynamicNTK)
            and isinstance(eng.scaling, NTK)]


def check_longrope(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    out = []
    for e, v, t, ref, eng in _pairs(ctx):
        if not isinstance(getattr(ref, "scaling", None), LongRoPE) or not isinstance(getattr(eng, "scaling", None),
                                                                                     LongRoPE) or e == "hf":
            continue
        L0 = ref.scaling.original_max_position_embeddings  # type: ignore[union-attr]
        if v.context <= L0 or ref.scaling.short_factor == ref.scaling.long_factor:  # type: ignore[union-attr]
            continue
        out.append(make("longrope-switch", e, [t], f"HF picks LongRoPE factors per sequence: short up to length "
                        f"{L0}, long from length {L0 + 1}; {e} picks once from its context {v.context} > {L0}, "
                        "so every "
                        f"sequence (also those <= {L0} tokens) runs the long factors",
                        f"run {e} with a context <= {L0} for short inputs, or accept long factors everywhere "
                        "(vLLM: --max-model-len; llama.cpp: -c)"))
    return out


# -- engine checks, generic -------------------------------------------------------------------------------
def check_scaling_presence(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    out = []
    hybrid = len({c for c in _rotating(ctx.reference).values()}) > 1
    for e, v, t, ref, eng in _pairs(ctx):
        if ref is None or eng is None or _explained(found, e, t):
            continue
        why = v.facts.get("converter_drops", "")
        if ref.scaling is not None and (eng.scaling is None or _identity(eng)):
            code = "layer-type-mismatch" if hybrid else "scaling-not-applied"
            what = "is an identity (factor 1)" if eng.scaling is not None else "is not applied"
            hf, flags = _suggest_fix(ref)
            out.append(make(code, e, [t], f"{e}: the checkpoint's {ref.scaling!r:.120} on {t} {what}"
                            + (f" ({why})" if why else ""), f"HF/vLLM: {hf}; llama.cpp: {flags}"))
        elif ref.scaling is None and eng.scaling is not None and hybrid:
            out.append(make("layer-type-mismatch", e, [t], f"{e} scales {t} with {eng.scaling!r:.120}, which the "
                            "checkpoint leaves unscaled", "scale only the layer types the checkpoint scales "
                            "(nested rope_parameters per layer type)"))
        elif ref.method != eng.method and not _identity(eng):  # same method, other values: the distance says
            out.append(make("scaling-overridden", e, [t], f"{e} runs {eng.scaling!r:.120} where the checkpoint has "
                            f"{ref.scaling!r:.120}", "nothing, if deliberate"))
    return out


def _identity(cfg: RopeConfig) -> bool:
    sc = cfg.scaling
    return isinstance(sc, (Linear, YaRN)) and float(sc.factor) == 1.0


def _suggest_fix(ref: RopeConfig) -> tuple[str, str]:
    from ropekit.interop.hf import to_hf

    try:
        hf = json.dumps({"rope_parameters": to_hf(ref)["rope_parameters"]})
    except ValueError as exc:
        hf = f"(not expressible: {exc})"
    return hf, " ".join(_llama_args(ref))


def check_base(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    return [make("base-mismatch", e, [t], f"{e} rotates with base {eng.base:g}, the checkpoint with {ref.base:g}",
                 f"set rope_theta={ref.base:g} (llama.cpp: --rope-freq-base {ref.base:g}, or drop the flag)")
            for e, v, t, ref, eng in _pairs(ctx)
            if ref is not None and eng is not None and not math.isclose(eng.base, ref.base, rel_tol=1e-6)
            and not _explained(found, e, t)]


def check_context(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    out = []
    window = text_config(ctx.dep.hf_config or {}).get("sliding_window") if ctx.dep.has_hf else None
    for e, v, plan in _views(ctx):
        for t, cfg in _rotating(plan).items():
            if "sliding" in t and isinstance(window, int) and window < v.context:
                continue  # sliding layers never see a distance beyond their window
            cover = covered_context(cfg)
            if v.context <= cover:
                continue
            hf, flags = _suggest_yarn(cfg, v.context)
            over = v.facts.get("max_model_len_over")
            extra = f" ({over}: vLLM refuses to start)" if over else ""
            out.append(make("context-uncovered", e, [t], f"{e} is configured for {v.context} positions but {t}'s RoPE "
                            f"({cfg.method}) covers {int(cover)}{extra}: positions past {int(cover)} get angles the "
                            f"model never saw and quality collapses without an error ({PPL_QUOTE})",
                            f"add a scaling that covers it, e.g. HF/vLLM --hf-overrides '{hf}'; llama.cpp {flags}"))
    return out


def check_distance(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    out = []
    for (e, t), d in ctx.distances.items():
        overridden = any(f.code == "scaling-overridden" and f.engine == e and t in f.layer_types for f in found)
        if not d.get("comparable") or _explained(found, e, t) or overridden:
            continue
        if d["max_angle_error"] > 1e-3 or d["attention_factor_diff"] > 1e-3 or d["max_abs_dcos"] > 1e-3:
            out.append(make("engine-differs", e, [t], f"{e} vs checkpoint on {t}: max angle error "
                            f"{d['max_angle_error']:.3g} rad, max |dcos| {d['max_abs_dcos']:.3g}, attention factor "
                            f"differs by {d['attention_factor_diff']:.3g}", "set the engine's keys so that it computes "
                            "the checkpoint's RoPE (see the engines table); e.g. vLLM YaRN takes attn_factor, not "
                            "attention_factor"))
    return out


def check_fp32(ctx: CheckContext, found: list[Finding]) -> list[Finding]:
    from ropekit.doctor.distance import FP32_TOLERANCE

    return [make("fp32-angle-error", e, [t], f"{e} forms angles in float32: off by up to {err:.3g} rad at "
                 f"{ctx.views[e].context} positions (> {FP32_TOLERANCE:g})", "nothing required below ~1e-2 rad; "
                 "ropekit.patch(model) computes the angles in float64 for HF")
            for (e, t), err in ctx.fp32.items() if err > FP32_TOLERANCE]


#: check name -> function, in the order they run (specific causes before the generic comparisons).
CHECKS: dict[str, Callable[[CheckContext, list[Finding]], list[Finding]]] = {
    "rejects": check_rejects,
    "theta_missing": check_theta_missing,
    "legacy_conflict": check_legacy_conflict,
    "factor": check_factor,
    "swapped_types": check_swapped_types,
    "reader_facts": check_reader_facts,
    "gguf_missing": check_gguf_missing,
    "layout": check_layout,
    "dynamic": check_dynamic,
    "longrope": check_longrope,
    "partial": check_partial,
    "scaling_presence": check_scaling_presence,
    "base": check_base,
    "context": check_context,
    "distance": check_distance,
    "fp32": check_fp32,
}
