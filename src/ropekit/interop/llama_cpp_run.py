"""Run llama.cpp (through ``llama-cpp-python``) configured only from ropekit's flags, and compare perplexities.

The proof that :func:`ropekit.interop.llama_cpp.to_llama_cpp_args` means what ropekit means: the same token
ids go through the ropekit-patched HF model and through llama.cpp whose RoPE settings come *only* from
those flags (mapped to ``llama_cpp.Llama`` constructor kwargs by :func:`llama_cpp_kwargs`); the
per-position-bucket perplexities must agree. llama.cpp reads RoPE settings from the GGUF and lets the
constructor override them, so every setting the flags carry is passed explicitly and nothing else is.

``llama_cpp`` is imported inside the functions that run it (it is an optional, compiled dependency).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.scaling import Scaling
from ropekit.core.validation import check_choice, suggest
from ropekit.eval.perplexity import bucket_edges, bucket_label, token_losses
from ropekit.interop.llama_cpp import LLAMA_CPP_FLAGS, parse_llama_cpp_args, to_llama_cpp_args

__all__ = [
    "ROPE_SCALING_TYPES",
    "hf_token_losses",
    "llama_cpp_kwargs",
    "llama_cpp_token_losses",
    "verify_llama_cpp",
]

#: ``--rope-scaling`` names -> llama.h ``enum llama_rope_scaling_type`` values (stable ABI; checked
#: against ``llama_cpp.LLAMA_ROPE_SCALING_TYPE_*`` in the tests, so importing llama_cpp is not needed here).
ROPE_SCALING_TYPES: dict[str, int] = {"none": 0, "linear": 1, "yarn": 2}

_CTX_FLAGS = ("--ctx-size", "-c")  # the one non-RoPE flag accepted: it sizes the context, it does not rotate


def _to_int(name: str, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"llama.cpp flag {name} needs an integer, got {text!r}.") from None
    if not value.is_integer() or value < 0:
        raise ValueError(f"llama.cpp flag {name} needs an integer >= 0, got {text!r}.")
    return int(value)


def _to_float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"llama.cpp flag {name} needs a number, got {text!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"llama.cpp flag {name} needs a finite number, got {text!r}.")
    return value


def _scale_kwarg(text: str) -> tuple[str, float]:
    s = _to_float("--rope-scale", text)
    if s <= 0:
        raise ValueError(f"llama.cpp flag --rope-scale needs a number > 0, got {text!r}.")
    return "rope_freq_scale", 1.0 / s  # llama.cpp: --rope-scale N means freq_scale = 1/N


def _freq_scale_kwarg(text: str) -> tuple[str, float]:
    f = _to_float("--rope-freq-scale", text)
    if f <= 0:
        raise ValueError(f"llama.cpp flag --rope-freq-scale needs a number > 0, got {text!r}.")
    return "rope_freq_scale", f


def _base_kwarg(text: str) -> tuple[str, float]:
    b = _to_float("--rope-freq-base", text)
    if b < 0:
        raise ValueError(f"llama.cpp flag --rope-freq-base needs a number >= 0 (0 = the model's), got {text!r}.")
    return "rope_freq_base", b


def _type_kwarg(text: str) -> tuple[str, int]:
    return "rope_scaling_type", ROPE_SCALING_TYPES[check_choice("--rope-scaling", text, ROPE_SCALING_TYPES)]


def _float_kwarg(flag: str, kwarg: str) -> Callable[[str], tuple[str, float]]:
    return lambda text: (kwarg, _to_float(flag, text))


#: every flag this runner maps, to a parser returning ``(Llama kwarg, value)``; anything else is refused.
_FLAG_TO_KWARG: dict[str, Callable[[str], tuple[str, Any]]] = {
    "--rope-scaling": _type_kwarg,
    "--rope-scale": _scale_kwarg,
    "--rope-freq-scale": _freq_scale_kwarg,
    "--rope-freq-base": _base_kwarg,
    "--yarn-orig-ctx": lambda text: ("yarn_orig_ctx", _to_int("--yarn-orig-ctx", text)),
    "--yarn-ext-factor": _float_kwarg("--yarn-ext-factor", "yarn_ext_factor"),
    "--yarn-attn-factor": _float_kwarg("--yarn-attn-factor", "yarn_attn_factor"),
    "--yarn-beta-fast": _float_kwarg("--yarn-beta-fast", "yarn_beta_fast"),
    "--yarn-beta-slow": _float_kwarg("--yarn-beta-slow", "yarn_beta_slow"),
}


def _split_ctx(args: list[str]) -> tuple[list[str], int | None]:
    """Check every token is a known flag with a value; return the RoPE part and ``--ctx-size``."""
    bad = [a for a in args if not isinstance(a, str)]
    if bad:
        raise TypeError(f"llama.cpp args must be strings, got {type(bad[0]).__name__} {bad[0]!r}.")
    rope: list[str] = []
    n_ctx = None
    i = 0
    while i < len(args):
        tok = args[i]
        name, eq, val = tok.partition("=")
        known = (*LLAMA_CPP_FLAGS, *_CTX_FLAGS)
        if name not in known:
            what = "flag" if tok.startswith("-") else "argument (not a flag)"
            raise ValueError(f"llama.cpp {what} {name!r} has no llama_cpp.Llama equivalent in ropekit; mappable "
                             f"flags: {sorted(known)}." + suggest(name, known))
        if not eq:
            if i + 1 >= len(args):
                raise ValueError(f"llama.cpp flag {name} needs a value.")
            val = args[i + 1]
            i += 1
        i += 1
        if name in _CTX_FLAGS:
            n_ctx = _to_int(name, val)
        else:
            rope += [name, val]
    return rope, n_ctx


def llama_cpp_kwargs(args: Sequence[str] | str) -> dict[str, Any]:
    """``llama_cpp.Llama(...)`` keyword arguments equivalent to llama.cpp CLI flags.

    Accepts the RoPE flags of :data:`ropekit.interop.llama_cpp.LLAMA_CPP_FLAGS` and ``--ctx-size``/``-c``
    (``n_ctx``); any other token raises ``ValueError`` naming it, so no flag is silently dropped.
    Flags absent from ``args`` are absent from the result (llama.cpp then uses the GGUF's values).

    >>> llama_cpp_kwargs(["--rope-freq-base", "100000", "--rope-scaling", "linear", "--rope-scale", "4"])
    {'rope_freq_base': 100000.0, 'rope_scaling_type': 1, 'rope_freq_scale': 0.25}
    """
    if isinstance(args, str):
        args = args.split()
    if not isinstance(args, Sequence):
        raise TypeError(f"args must be a list of strings or one string, got {type(args).__name__}.")
    rope, n_ctx = _split_ctx(list(args))
    out: dict[str, Any] = {}
    for flag, text in parse_llama_cpp_args(rope).items():
        kwarg, value = _FLAG_TO_KWARG[flag](text)
        if kwarg in out and not math.isclose(out[kwarg], value, rel_tol=1e-6):
            raise ValueError(f"--rope-scale and --rope-freq-scale disagree ({1 / out[kwarg]:g} vs 1/{value:g}); "
                             "pass one of them (scale = 1/freq_scale).")
        out[kwarg] = value
    if out.get("rope_scaling_type") == ROPE_SCALING_TYPES["none"] and out.get("rope_freq_scale", 1.0) != 1.0:
        # llama.cpp would silently force freq_scale = 1 here
        raise ValueError("--rope-scaling none ignores --rope-scale/--rope-freq-scale; drop the scale or pick "
                         "linear/yarn.")
    if n_ctx is not None:
        out["n_ctx"] = n_ctx
    return out


def _ids_list(tokens: Any) -> list[int]:
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() != 1 or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise ValueError(f"tokens must be a 1-D integer tensor, got shape {tuple(tokens.shape)} {tokens.dtype}.")
        ids = [int(t) for t in tokens.tolist()]
    elif isinstance(tokens, Sequence) and not isinstance(tokens, (str, bytes)):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise TypeError("tokens must be a sequence of int token ids.")
        ids = list(tokens)
    else:
        raise TypeError(f"tokens must be a 1-D integer tensor or a list of ints, got {type(tokens).__name__}.")
    if len(ids) < 2:
        raise ValueError(f"tokens must hold at least 2 ids (one prediction), got {len(ids)}.")
    if min(ids) < 0:
        raise ValueError(f"tokens must be non-negative ids, got {min(ids)}.")
    return ids


def llama_cpp_token_losses(
    gguf_path: str | os.PathLike[str],
    tokens: Sequence[int] | torch.Tensor,
    args: Sequence[str] | str,
    *,
    n_threads: int | None = None,
    n_batch: int = 512,
    chunk: int = 512,
) -> torch.Tensor:
    """Next-token losses (nats, float32) for targets ``1 .. n-1`` of ``tokens``, computed by llama.cpp.

    llama.cpp loads ``gguf_path`` with RoPE settings from ``args`` only (see :func:`llama_cpp_kwargs`),
    evaluates the ids once (no BOS added) keeping every position's logits, and the log-softmax is taken
    ``chunk`` rows at a time. Memory: llama-cpp-python keeps ``4 * n_vocab * n`` bytes of logits.

    >>> losses = llama_cpp_token_losses("model.gguf", ids, to_llama_cpp_args(cfg))  # doctest: +SKIP
    """
    import llama_cpp

    ids = _ids_list(tokens)
    kw = llama_cpp_kwargs(args)
    n_ctx = kw.pop("n_ctx", len(ids))
    if n_ctx < len(ids):
        raise ValueError(f"--ctx-size {n_ctx} is smaller than the {len(ids)} tokens to evaluate.")
    for name, value in (("n_batch", n_batch), ("chunk", chunk)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    threads = n_threads or max(1, torch.get_num_threads())
    llm = llama_cpp.Llama(
        os.fspath(gguf_path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
        n_threads_batch=threads, logits_all=True, verbose=False, **kw,
    )
    try:
        if max(ids) >= llm.n_vocab():
            raise ValueError(f"token id {max(ids)} is outside the GGUF's vocabulary of {llm.n_vocab()} ids.")
        llm.eval(ids)
        target = torch.tensor(ids, dtype=torch.long)
        out = torch.empty(len(ids) - 1, dtype=torch.float32)
        for start in range(0, len(ids) - 1, chunk):
            stop = min(start + chunk, len(ids) - 1)
            logits = torch.from_numpy(llm.scores[start:stop]).float()  # a view: no copy of the big array
            out[start:stop] = torch.nn.functional.cross_entropy(logits, target[start + 1 : stop + 1],
                                                                reduction="none")
    finally:
        llm.close()
    return out


def hf_token_losses(
    model: Any, tokens: Sequence[int] | torch.Tensor, cfg_or_scaling: RopeConfig | Scaling | None = None
) -> tuple[torch.Tensor, RopeConfig]:
    """``(losses, cfg)``: next-token losses of ``tokens`` in ``model`` patched by ropekit with
    ``cfg_or_scaling`` (one full forward, no KV cache), and the full config the patch used. The patch is
    undone before returning.

    >>> import ropekit                                                        # doctest: +SKIP
    >>> model, tok = ropekit.load_model("smollm2-135m", device="cpu")         # doctest: +SKIP
    >>> losses, cfg = hf_token_losses(model, [1, 2, 3], ropekit.Linear(factor=2.0))  # doctest: +SKIP
    """
    from ropekit.patching import patch

    ids = torch.tensor(_ids_list(tokens), dtype=torch.long)
    handle = patch(model, cfg_or_scaling)
    try:
        return token_losses(model, ids), handle.config
    finally:
        handle.undo()


def _bucket_rows(hf: torch.Tensor, cpp: torch.Tensor, context: int) -> list[dict[str, Any]]:
    rows = []
    for lo, hi in bucket_edges(hf.numel() + 1, context):
        a, b = hf[max(lo, 1) - 1 : hi - 1].double(), cpp[max(lo, 1) - 1 : hi - 1].double()
        p_hf, p_cpp = math.exp(float(a.mean())), math.exp(float(b.mean()))
        rows.append({"lo": lo, "hi": hi, "label": bucket_label(lo, hi), "tokens": int(a.numel()),
                     "ppl_hf": p_hf, "ppl_llama_cpp": p_cpp, "rel_diff": abs(p_cpp - p_hf) / p_hf})
    return rows


def verify_llama_cpp(
    gguf_path: str | os.PathLike[str],
    cfg_or_scaling: RopeConfig | Scaling | None = None,
    tokens: Sequence[int] | torch.Tensor | None = None,
    *,
    length: int = 4096,
    context: int | None = None,
    text: str | os.PathLike[str] = "stdlib",
    tolerance: float = 0.01,
    n_threads: int | None = None,
    model: Any = None,
) -> dict[str, Any]:
    """Perplexity parity between the ropekit-patched HF model and llama.cpp configured from ropekit's flags.

    ``gguf_path``: the GGUF llama.cpp runs; the HF side is the same file dequantized
    (:func:`ropekit.load_model`), unless ``model`` is given (a ``(model, tokenizer)`` pair from
    :func:`ropekit.load_model` of that GGUF). ``cfg_or_scaling``: as in :func:`ropekit.patch` (``None``: the
    model's own RoPE); llama.cpp gets ``to_llama_cpp_args(cfg)`` of the resulting config and nothing else
    about RoPE. ``tokens``: ids (tokenized once, by the HF tokenizer, and fed as ids to both engines);
    ``None`` takes the first ``length``-token window of ``text`` (see :mod:`ropekit.eval.text`).
    ``context``: bucket edges are multiples of ``context / 2`` (default: the config's
    ``original_max_position_embeddings``, else the model's ``max_position_embeddings``).

    Returns ``{"gguf", "method", "llama_cpp_args", "llama_cpp_kwargs", "n_tokens", "context", "buckets",
    "overall", "max_rel_diff", "tolerance", "ok", "seconds"}``; each bucket (and ``overall``) has
    ``"ppl_hf"``, ``"ppl_llama_cpp"`` and ``"rel_diff"`` = ``|ppl_llama_cpp - ppl_hf| / ppl_hf``; ``ok`` means
    every bucket's ``rel_diff <= tolerance``.

    Noise floor: llama.cpp quantizes activations (Q8) for quantized weights and keeps an f16 KV cache, so
    per-token losses differ from the fp32 HF model by ~0.04 nats even with identical RoPE. On SmolLM2-135M
    Q4_1 that is <= 0.6% per 1024-token bucket but up to ~2% per 128-token bucket: judge with buckets of
    1000+ tokens (``context >= 2000``). A wrong RoPE setting moves perplexity by 14% or more there.

    >>> import ropekit
    >>> r = verify_llama_cpp("model.gguf", ropekit.YaRN(factor=2.0, original_max_position_embeddings=4096),
    ...                      length=8192)  # doctest: +SKIP
    >>> r["ok"], [b["label"] for b in r["buckets"]]  # doctest: +SKIP
    (True, ['0k-2k', '2k-4k', '4k-6k', '6k-8k'])
    """
    import llama_cpp  # noqa: F401  # fail before the (slow) HF side when the engine is missing

    from ropekit.models import load_model

    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be a number in (0, 1), got {tolerance!r}.")
    if model is None:
        hf_model, tokenizer = load_model(gguf_path, device="cpu")
    elif isinstance(model, tuple) and len(model) == 2:
        hf_model, tokenizer = model
    else:
        raise TypeError("model must be None or a (model, tokenizer) pair from ropekit.load_model.")
    if tokens is None:
        from ropekit.eval.text import resolve_text, token_windows

        tokens = token_windows(tokenizer, resolve_text(text), length, 1)[0].ids
    ids = _ids_list(tokens)
    t0 = time.perf_counter()
    hf, cfg = hf_token_losses(hf_model, ids, cfg_or_scaling)
    t1 = time.perf_counter()
    args = to_llama_cpp_args(cfg)
    cpp = llama_cpp_token_losses(gguf_path, ids, args, n_threads=n_threads)
    t2 = time.perf_counter()
    if context is None:
        context = cfg.original_max_position_embeddings or hf_model.config.max_position_embeddings
    buckets = _bucket_rows(hf, cpp, int(context))
    p_hf, p_cpp = math.exp(float(hf.double().mean())), math.exp(float(cpp.double().mean()))
    worst = max(b["rel_diff"] for b in buckets)
    return {
        "gguf": os.fspath(gguf_path), "method": cfg.method, "llama_cpp_args": args,
        "llama_cpp_kwargs": llama_cpp_kwargs(args), "n_tokens": len(ids), "context": int(context),
        "buckets": buckets,
        "overall": {"ppl_hf": p_hf, "ppl_llama_cpp": p_cpp, "rel_diff": abs(p_cpp - p_hf) / p_hf},
        "max_rel_diff": worst, "tolerance": float(tolerance), "ok": worst <= tolerance,
        "seconds": {"hf": t1 - t0, "llama_cpp": t2 - t1},
    }
