"""``ropekit doctor`` output: a table per engine and layer type plus the findings, or one JSON document.

>>> from ropekit.doctor import Deployment, diagnose
>>> diag = diagnose(Deployment(hf_config={"model_type": "llama", "hidden_size": 256, "num_attention_heads": 4,
...     "num_hidden_layers": 2, "max_position_embeddings": 4096, "rope_theta": 10000.0}), engines="hf")
>>> sorted(to_json(diag))
['context', 'engines', 'exit_status', 'findings', 'reference']
"""

from __future__ import annotations

from typing import Any

from ropekit.doctor.diagnose import Diagnosis, engine_rows

__all__ = ["format_text", "to_json"]


def to_json(diag: Diagnosis, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document: ``findings`` (code, severity, engine, layer_types, message, fix), ``engines``
    (per engine, per layer type: the RoPE it runs and its distances), ``reference``, ``context`` and
    ``exit_status``; ``extra`` sections (``live``, ``verify``) are merged in."""
    out = {"context": diag.target, "exit_status": diag.exit_status,
           "findings": [f.to_dict() for f in diag.findings], "engines": engine_rows(diag),
           "reference": diag.reference.describe()}
    for key, value in (extra or {}).items():
        out[key] = value
    return out


def _params(rope: dict[str, Any]) -> str:
    sc = rope.get("scaling") or {}
    keep = {k: v for k, v in sc.items() if v is not None and not isinstance(v, (tuple, list))}
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in keep.items())


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.2g}"


def format_text(diag: Diagnosis) -> str:
    """A human-readable report: one row per engine and layer type, then the findings with their fixes."""
    rows = [("engine", "layer type", "layers", "base", "rot/head", "layout", "method", "attn", "covers",
             "switch", "angle err", "fp32 err")]
    for e, entry in engine_rows(diag).items():
        if entry["rejected"]:
            rows.append((e, "-", "-", "-", "-", "-", f"rejected: {entry['rejected'][:60]}", "", "", "", "", ""))
            continue
        for t, item in entry["layer_types"].items():
            rope = item["rope"]
            if rope is None:
                rows.append((e, t, str(len(item["layers"])), "NoPE", "", "", "", "", "", "", "", ""))
                continue
            dist = item.get("distance") or {}
            method = rope["method"] + (f"({_params(rope)})" if rope.get("scaling") else "")
            rows.append((e, t, f"{len(item['rotating_layers'])}/{len(item['layers'])}", f"{rope['base']:g}",
                         f"{rope['rotary_dim']}/{rope['head_dim']}", rope["layout"], method,
                         f"{rope['attention_factor']:.4g}", str(item.get("covered_context") or "inf"),
                         item.get("switch") or "-", _fmt(dist.get("max_angle_error")),
                         _fmt(item.get("fp32_angle_error"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"context checked: {diag.target} positions"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("")
    if not diag.findings:
        lines.append("no findings: every engine runs the checkpoint's RoPE at this context.")
    for f in diag.findings:
        lines.append(f"{f.severity.upper():7} {f.code} [{f.engine}; {', '.join(f.layer_types)}]")
        lines.append(f"        {f.message}")
        lines.append(f"        fix: {f.fix}")
    n_err = sum(f.severity == "error" for f in diag.findings)
    n_warn = sum(f.severity == "warning" for f in diag.findings)
    lines.append(f"\n{n_err} error(s), {n_warn} warning(s), {len(diag.findings) - n_err - n_warn} note(s).")
    return "\n".join(lines)
