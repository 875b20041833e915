"""Load a RopeConfig from whatever file a user has: an HF config.json, a model directory, or a GGUF."""

from __future__ import annotations

import json
import os

from ropekit.core.config import RopeConfig

__all__ = ["load_rope_config"]


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
    path = os.fspath(path)
    if os.path.isdir(path):
        cfg_json = os.path.join(path, "config.json")
        if os.path.isfile(cfg_json):
            return load_rope_config(cfg_json, layer_type=layer_type)
        ggufs = sorted(f for f in os.listdir(path) if f.endswith(".gguf"))
        if len(ggufs) == 1:
            return load_rope_config(os.path.join(path, ggufs[0]))
        raise FileNotFoundError(
            f"{path}: no config.json and {len(ggufs)} .gguf files; pass the file itself."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file or directory: {path}")
    if path.endswith(".gguf"):
        if layer_type is not None:
            raise ValueError("layer_type applies to HF configs only, not GGUF files.")
        from ropekit.interop.gguf import from_gguf

        return from_gguf(path)
    if path.endswith(".json"):
        from ropekit.interop.hf import from_hf

        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} is not valid JSON: {exc}") from None
        return from_hf(data, layer_type=layer_type)
    raise ValueError(f"{path}: expected a .json (HF config), a .gguf file or a model directory.")
