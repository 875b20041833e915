"""What ``ropekit doctor`` checks: a :class:`Deployment` (the checkpoint's files plus the flags it is deployed with).

The checkpoint is an HF ``config.json`` (decoder text config), a GGUF's metadata, or both (a model directory
holding a config.json and one .gguf, a known model name, or ``--gguf``). The flags are the ones each engine
will be started with; nothing here interprets them (see :mod:`ropekit.doctor.engines`).

>>> dep = Deployment(hf_config={"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 256,
...                             "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}})
>>> dep.has_hf, dep.has_gguf
(True, False)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Deployment", "load_deployment"]


def _check_mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a JSON object (dict), got {type(value).__name__}.")
    if not all(isinstance(k, str) for k in value):
        raise TypeError(f"{name} keys must be strings.")
    return dict(value)


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """A checkpoint and the flags it is deployed with."""

    hf_config: Mapping[str, Any] | None = None  # config.json as shipped (composite configs: the whole dict)
    gguf: Mapping[str, Any] | None = None  # GGUF metadata key -> value (vocabulary arrays left out)
    gguf_tensors: Mapping[str, Any] = field(default_factory=dict)  # rope_freqs / rope_factors_* tensors
    gguf_path: str | None = None  # the .gguf file itself, when it was read from disk (--verify)
    model: str | None = None  # what --load loads (a name, HF dir or .gguf), when known
    llama_cpp_args: tuple[str, ...] = ()  # llama-cli / llama-server flags (RoPE flags and -c/--ctx-size)
    vllm_args: Mapping[str, Any] = field(default_factory=dict)  # vLLM engine args (max_model_len, ...)
    hf_overrides: Mapping[str, Any] = field(default_factory=dict)  # top-level config keys replaced at load
    hf_version: int | None = None  # transformers major the hf engine follows (4 or 5; None: the installed one)
    hf_derived: bool = False  # hf_config was derived from the GGUF by transformers: the GGUF is the reference

    def __post_init__(self) -> None:
        if self.hf_config is None and self.gguf is None:
            raise ValueError("a Deployment needs hf_config (an HF config.json dict) or gguf (GGUF metadata), or both.")
        if self.hf_config is not None:
            object.__setattr__(self, "hf_config", _check_mapping("hf_config", self.hf_config))
        if self.gguf is not None:
            object.__setattr__(self, "gguf", _check_mapping("gguf", self.gguf))
        object.__setattr__(self, "gguf_tensors", _check_mapping("gguf_tensors", self.gguf_tensors))
        args = self.llama_cpp_args
        if isinstance(args, str):
            args = tuple(args.split())
        if not isinstance(args, Sequence) or not all(isinstance(a, str) for a in args):
            raise TypeError("llama_cpp_args must be a string or a sequence of strings.")
        object.__setattr__(self, "llama_cpp_args", tuple(args))
        object.__setattr__(self, "vllm_args", _check_mapping("vllm_args", self.vllm_args))
        object.__setattr__(self, "hf_overrides", _check_mapping("hf_overrides", self.hf_overrides))
        if self.hf_version is not None and (isinstance(self.hf_version, bool) or self.hf_version not in (4, 5)):
            raise ValueError(f"hf_version must be 4, 5 or None (the installed transformers), got {self.hf_version!r}.")

    @property
    def has_hf(self) -> bool:
        return self.hf_config is not None

    @property
    def has_gguf(self) -> bool:
        return self.gguf is not None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object (an HF config), got {type(data).__name__}.")
    return data


def _read_gguf(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from ropekit.interop.gguf import gguf_metadata

    try:
        return gguf_metadata(str(path))
    except (OSError, KeyError, IndexError, EOFError) as exc:  # gguf's reader raises these on malformed files
        raise ValueError(f"{path} is not a readable GGUF file: {exc}") from None


def _hf_config_of_gguf(path: Path) -> dict[str, Any] | None:
    """The HF config transformers derives from a GGUF (what ``from_pretrained(gguf_file=...)`` runs)."""
    try:
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        return dict(load_gguf_checkpoint(str(path), return_tensors=False)["config"])
    except Exception:  # an architecture transformers cannot load: the hf engine is then skipped
        return None


def load_deployment(source: str | os.PathLike[str], *, gguf: str | os.PathLike[str] | None = None,
                    **flags: Any) -> Deployment:
    """A :class:`Deployment` from ``source``: an HF model dir, a config.json, a .gguf or a known model name.

    ``gguf`` pairs an HF config with the GGUF converted from it. ``flags``: the other Deployment fields.
    A known model name (e.g. ``"smollm2-135m"``) gives both its GGUF and its HF config.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or a model name, got {type(source).__name__}.")
    text = os.fspath(source)
    path = Path(text).expanduser()
    hf: dict[str, Any] | None = None
    kv: dict[str, Any] | None = None
    tensors: dict[str, Any] = {}
    gguf_file: Path | None = None
    derived = False
    if path.is_dir():
        if (path / "config.json").is_file():
            hf = _read_json(path / "config.json")
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            gguf_file = ggufs[0]
        elif hf is None:
            raise ValueError(f"{path}: no config.json and {len(ggufs)} .gguf files; pass one file.")
    elif path.is_file() and path.suffix == ".gguf":
        gguf_file = path
    elif path.is_file() and path.suffix == ".json":
        hf = _read_json(path)
    elif path.exists():
        raise ValueError(f"{path}: expected a config.json, a .gguf file, a model directory or a model name.")
    elif path.suffix in (".json", ".gguf") or os.sep in text:
        raise FileNotFoundError(f"no such file or directory: {text}")
    else:
        from ropekit import models  # a known model name: its GGUF and the HF config load_model runs

        src = models.resolve_model(text)
        directory = models.hf_directory(src)
        hf = _read_json(directory / "config.json")
        derived = src.gguf is not None  # the cached config.json was written from the GGUF by transformers
        if src.gguf is not None:
            gguf_file = src.directory / src.gguf
            if src.parts is not None:  # hf_directory joined the parts beside the cache entry
                gguf_file = directory.parent / f"{directory.name}.gguf"
    if gguf is not None:
        gguf_file = Path(gguf).expanduser()
        if not gguf_file.is_file():
            raise FileNotFoundError(f"no such GGUF file: {gguf_file}")
    if gguf_file is not None:
        kv, tensors = _read_gguf(gguf_file)
        if hf is None:
            hf = _hf_config_of_gguf(gguf_file)
            derived = hf is not None
    model = text if not path.exists() or path.is_dir() or path.suffix == ".gguf" else None
    return Deployment(hf_config=hf, gguf=kv, gguf_tensors=tensors,
                      gguf_path=None if gguf_file is None else str(gguf_file), model=model,
                      hf_derived=derived, **flags)
