"""Load a RopeConfig (or a whole-model RopePlan) from whatever file a user has: an HF config.json, a
model directory, or a GGUF. The one place that decides what a path is; ``ropekit inspect`` uses it."""

from __future__ import annotations

import json
import os
from typing import Any

from ropekit.core.config import RopeConfig
from ropekit.core.plan import RopePlan

__all__ = ["load_rope_config", "load_rope_plan", "resolve_rope_file"]


def resolve_rope_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(kind, file)`` for ``path``: kind ``"hf"`` (a ``.json`` config) or ``"gguf"``. A directory resolves
    to its ``config.json``, else to its only ``.gguf``. ``FileNotFoundError`` / ``ValueError`` otherwise.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); open(os.path.join(d, "config.json"), "w").close()
    >>> resolve_rope_file(d)[0]
    'hf'
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        cfg_json = os.path.join(path, "config.json")
        if os.path.isfile(cfg_json):
            return "hf", cfg_json
        ggufs = sorted(f for f in os.listdir(path) if f.endswith(".gguf"))
        if len(ggufs) == 1:
            return "gguf", os.path.join(path, ggufs[0])
        raise FileNotFoundError(f"{path}: no config.json and {len(ggufs)} .gguf files; pass the file itself.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file or directory: {path}")
    if path.endswith(".gguf"):
        return "gguf", path
    if path.endswith(".json"):
        return "hf", path
    raise ValueError(f"{path}: expected a .json (HF config), a .gguf file or a model directory.")


def _read_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None


def load_rope_config(path: str | os.PathLike[str], *, layer_type: str | None = None) -> RopeConfig:
    """``RopeConfig`` from ``path``: a ``.gguf`` file (:func:`~ropekit.interop.gguf.from_gguf`), an HF
    ``config.json`` (any ``.json``), or a directory holding ``config.json`` or exactly one ``.gguf``.
    ``layer_type`` picks an entry of per-layer-type HF ``rope_parameters``.

    >>> import json, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "config.json"), "w") as f:
    ...     json.dump({"hidden_size": 576, "num_attention_heads": 9, "rope_theta": 100000.0}, f)
    >>> load_rope_config(d).base
    100000.0
    """
    kind, file = resolve_rope_file(path)
    if kind == "gguf":
        if layer_type is not None:
            raise ValueError("layer_type applies to HF configs only, not GGUF files.")
        from ropekit.interop.gguf import from_gguf

        return from_gguf(file)
    from ropekit.interop.hf import from_hf

    return from_hf(_read_json(file), layer_type=layer_type)


def load_rope_plan(path: str | os.PathLike[str]) -> RopePlan | None:
    """The whole-model :class:`~ropekit.RopePlan` of an HF ``config.json`` / model directory (per layer
    type, NoPE layers); ``None`` for a GGUF file, whose metadata holds one RoPE for every layer."""
    kind, file = resolve_rope_file(path)
    return None if kind == "gguf" else RopePlan.from_hf(_read_json(file))
