"""llama.cpp's Self-Extend (``llama-cli --grp-attn-n G --grp-attn-w W``) driven through llama-cpp-python.

llama-cpp-python has no grp-attn option: in llama.cpp, Self-Extend is not part of the library but a loop
in ``llama-cli`` around the library's KV-cache position operations (``llama_memory_seq_add`` /
``llama_memory_seq_div``; the cache re-rotates the shifted keys before the next decode). This module runs
that loop itself, batch by batch with explicit positions, so ropekit's ``SelfExtend(compat="llama.cpp")``
can be compared with llama.cpp's own attention and cache arithmetic (:func:`self_extend_parity`).

The schedule, as llama-cli has it: before each batch, while the (compressed) next position ``n_past`` is at
least ``ga_i + W``, the next ``W``-block of cached positions is floor-divided by ``G``, the positions after
it are shifted down to follow it, ``n_past`` drops by ``W - W / G`` and ``ga_i`` grows by ``W / G``.

What the comparison found (tests/interop/test_llama_cpp_self_extend.py keeps it checked): with the
positions moved by per-position ``seq_add``, llama.cpp and ropekit's ``compat="llama.cpp"`` agree to the
engines' noise floor. llama-cli's own ``seq_div`` does not: in the llama.cpp that llama-cpp-python 0.3.36
vendors, ``pos_div`` sets the cell to ``p // G`` but queues the key re-rotation as ``+(p - p // G)``
instead of ``-(p - p // G)``, so every grouped key is rotated to ``2p - p // G`` while its mask position
is ``p // G``, and the model's predictions collapse after the first grouping (numbers in experiments/LOG.md).

``llama_cpp`` is imported inside the functions that run it (an optional, compiled dependency).
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from ropekit.core.validation import check_choice
from ropekit.extension.methods import SelfExtend
from ropekit.interop.llama_cpp_run import _ids_list

__all__ = ["hf_batched_losses", "llama_cpp_self_extend_losses", "parity_report", "self_extend_losses",
           "self_extend_parity"]


def _check_batch(n_batch: object) -> int:
    if isinstance(n_batch, bool) or not isinstance(n_batch, int) or n_batch < 1:
        raise ValueError(f"n_batch must be an int >= 1 (tokens per llama.cpp batch), got {n_batch!r}.")
    return n_batch


def _check_method(method: object) -> SelfExtend:
    if not isinstance(method, SelfExtend) or method.compat != "llama.cpp":
        raise TypeError(f"method must be SelfExtend(..., compat='llama.cpp'), got {method!r}.")
    return method


def _losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")


def llama_cpp_self_extend_losses(
    gguf_path: str | os.PathLike[str], tokens: Sequence[int] | torch.Tensor, method: SelfExtend, *,
    n_batch: int = 512, n_threads: int | None = None, division: str = "seq_div",
) -> torch.Tensor:
    """Next-token losses (nats, float32, targets ``1 .. n-1``) of ``tokens`` under llama-cli's Self-Extend.

    ``method``: ``SelfExtend(group_size=G, window=W, compat="llama.cpp")`` (``G`` = ``--grp-attn-n``,
    ``W`` = ``--grp-attn-w``); ``n_batch``: tokens per evaluated batch (``-b``). The GGUF's own RoPE is used.
    ``division``: ``"seq_div"`` groups a block with ``llama_memory_seq_div``, as llama-cli does;
    ``"seq_add"`` moves each position ``p`` of the block to ``p // G`` with its own ``llama_memory_seq_add``
    (the same positions; the cache re-rotates each key by the signed move). They differ where
    ``seq_div`` records the key re-rotation with the wrong sign (module doc).

    >>> se = SelfExtend(group_size=4, window=256, compat="llama.cpp")
    >>> losses = llama_cpp_self_extend_losses("model.gguf", ids, se, n_batch=256)  # doctest: +SKIP
    """
    import llama_cpp

    se, ids, n_batch = _check_method(method), _ids_list(tokens), _check_batch(n_batch)
    check_choice("division", division, ("seq_div", "seq_add"))
    g, w = se.group_size, se.window
    threads = n_threads or max(1, torch.get_num_threads())
    llm = llama_cpp.Llama(os.fspath(gguf_path), n_ctx=len(ids), n_batch=n_batch, n_ubatch=n_batch,
                          n_threads=threads, n_threads_batch=threads, logits_all=True, verbose=False)
    batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
    try:
        ctx, vocab = llm.ctx, llm.n_vocab()
        if max(ids) >= vocab:
            raise ValueError(f"token id {max(ids)} is outside the GGUF's vocabulary of {vocab} ids.")
        mem = llama_cpp.llama_get_memory(ctx)
        if not llama_cpp.llama_memory_can_shift(mem):
            raise ValueError("this llama.cpp context cannot shift cached positions, so it cannot run Self-Extend.")
        target = torch.tensor(ids, dtype=torch.long)
        out = torch.empty(len(ids) - 1, dtype=torch.float32)
        n_past, ga_i, bd = 0, 0, (w // g) * (g - 1)  # compressed next position, first ungrouped position
        for start in range(0, len(ids), n_batch):
            while n_past >= ga_i + w:  # group the next W-block behind the batch (llama-cli's loop)
                moved = (g * ga_i) // w * bd  # the ungrouped tail sits this far below its true positions
                llama_cpp.llama_memory_seq_add(mem, 0, ga_i, n_past, moved)
                if division == "seq_div":
                    llama_cpp.llama_memory_seq_div(mem, 0, ga_i + moved, ga_i + moved + w, g)
                else:  # ascending: a moved key lands below every position still to move
                    for p in range(ga_i + moved, ga_i + moved + w):
                        llama_cpp.llama_memory_seq_add(mem, 0, p, p + 1, p // g - p)
                llama_cpp.llama_memory_seq_add(mem, 0, ga_i + moved + w, n_past + moved, w // g - moved - w)
                n_past -= bd
                ga_i += w // g
            chunk = ids[start:start + n_batch]
            for t, tok in enumerate(chunk):
                batch.token[t], batch.pos[t], batch.n_seq_id[t] = tok, n_past + t, 1
                batch.seq_id[t][0], batch.logits[t] = 0, True
            batch.n_tokens = len(chunk)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError(f"llama_decode failed on the batch at token {start}.")
            ptr = llama_cpp.llama_get_logits(ctx)
            flat = (ctypes.c_float * (len(chunk) * vocab)).from_address(ctypes.addressof(ptr.contents))
            logits = torch.frombuffer(flat, dtype=torch.float32).view(len(chunk), vocab)
            stop = min(start + len(chunk), len(ids) - 1)  # the last token has no target
            out[start:stop] = _losses(logits[: stop - start], target[start + 1:stop + 1])
            n_past += len(chunk)
    finally:
        llama_cpp.llama_batch_free(batch)
        llm.close()
    return out


@torch.no_grad()
def hf_batched_losses(model: Any, tokens: Sequence[int] | torch.Tensor, method: Any = None, *,
                      n_batch: int = 512) -> torch.Tensor:
    """Next-token losses of ``tokens`` in ``model`` fed ``n_batch`` tokens per forward call with a KV cache
    (each call is one llama.cpp batch), patched with ``method`` (``None``: unpatched); the patch is undone.

    >>> hf_batched_losses(model, ids, SelfExtend(group_size=4, window=256, compat="llama.cpp"))  # doctest: +SKIP
    """
    from ropekit.patching import patch
    from ropekit.patching.verify import cache_kwargs, returned_cache

    ids, n_batch = torch.tensor(_ids_list(tokens), dtype=torch.long), _check_batch(n_batch)
    handle = patch(model, method) if method is not None else None
    try:
        cache, out = None, torch.empty(ids.numel() - 1, dtype=torch.float32)
        for start in range(0, ids.numel(), n_batch):
            chunk = ids[start:start + n_batch][None]
            kw: dict[str, Any] = cache_kwargs(model, cache) if cache is not None else {}
            res = model(chunk, use_cache=True, **kw)
            cache = returned_cache(res)
            stop = min(start + chunk.shape[1], ids.numel() - 1)
            out[start:stop] = _losses(res.logits[0, : stop - start], ids[start + 1:stop + 1])
        return out
    finally:
        if handle is not None:
            handle.undo()


def self_extend_losses(gguf_path: str | os.PathLike[str], method: SelfExtend, tokens: Sequence[int] | torch.Tensor,
                       *, model: Any, n_batch: int = 512, n_threads: int | None = None) -> dict[str, torch.Tensor]:
    """Per-token losses of the same ids under llama.cpp's Self-Extend and ropekit's models of it.

    ``model``: the HF model of the same GGUF (:func:`ropekit.load_model`). Keys: ``"llama.cpp seq_div"`` (the
    schedule as llama-cli ships it), ``"llama.cpp seq_add"`` (the same positions moved one at a time),
    ``"llama.cpp none"``, ``"ropekit llama.cpp mode"``, ``"ropekit paper mode"`` (one forward) and
    ``"ropekit none"``; everything but the paper mode is fed in ``n_batch``-token batches.

    >>> losses = self_extend_losses("model.gguf", se, ids, model=model, n_batch=128)  # doctest: +SKIP
    """
    from ropekit.eval.perplexity import token_losses
    from ropekit.interop.llama_cpp_run import llama_cpp_token_losses
    from ropekit.patching import patch

    se = _check_method(method)
    ids = torch.tensor(_ids_list(tokens), dtype=torch.long)
    out = {f"llama.cpp {d}": llama_cpp_self_extend_losses(gguf_path, ids, se, n_batch=n_batch, n_threads=n_threads,
                                                          division=d) for d in ("seq_div", "seq_add")}
    out["llama.cpp none"] = llama_cpp_token_losses(gguf_path, ids, [], n_threads=n_threads, n_batch=n_batch)
    out["ropekit llama.cpp mode"] = hf_batched_losses(model, ids, se, n_batch=n_batch)
    with patch(model, SelfExtend(group_size=se.group_size, window=se.window)):
        out["ropekit paper mode"] = token_losses(model, ids)
    out["ropekit none"] = hf_batched_losses(model, ids, None, n_batch=n_batch)
    return out


def parity_report(losses: dict[str, torch.Tensor], method: SelfExtend, *, n_batch: int) -> dict[str, Any]:
    """Mean absolute per-token loss gaps (nats) of :func:`self_extend_losses`, over the targets past the window.

    The noise floor is the two engines without Self-Extend; ``seq_div_ok``: whether the shipped ``seq_div``
    path is within twice the noise floor of ropekit's model.
    """
    se = _check_method(method)
    past = slice(se.window, None)  # targets whose queries see grouped keys in some batch

    def gap(a: str, b: str) -> float:
        return float((losses[a][past] - losses[b][past]).abs().double().mean())

    noise = gap("llama.cpp none", "ropekit none")
    seq_div = gap("llama.cpp seq_div", "ropekit llama.cpp mode")
    return {
        "group_size": se.group_size, "window": se.window, "n_batch": n_batch,
        "n_tokens": int(losses["ropekit none"].numel()) + 1, "noise_floor": noise,
        "gap": {"seq_add": gap("llama.cpp seq_add", "ropekit llama.cpp mode"), "seq_div": seq_div,
                "seq_add_vs_paper_mode": gap("llama.cpp seq_add", "ropekit paper mode"),
                "seq_add_vs_no_self_extend": gap("llama.cpp seq_add", "ropekit none")},
        "mean_loss": {k: float(v[past].mean()) for k, v in losses.items()},
        "seq_div_ok": seq_div <= 2 * noise,
    }


def self_extend_parity(gguf_path: str | os.PathLike[str], method: SelfExtend, tokens: Sequence[int] | torch.Tensor,
                       *, model: Any, n_batch: int = 512, n_threads: int | None = None) -> dict[str, Any]:
    """:func:`parity_report` of :func:`self_extend_losses`, with the seconds both took.

    The gaps are llama.cpp's Self-Extend against ropekit's ``compat="llama.cpp"`` (``seq_add``, and ``seq_div``
    as shipped), next to the engines' noise floor and to ropekit's paper mode and no Self-Extend (what a wrong
    model of llama.cpp would look like).

    >>> se = SelfExtend(group_size=8, window=64, compat="llama.cpp")
    >>> r = self_extend_parity("model.gguf", se, ids, model=model, n_batch=128)  # doctest: +SKIP
    >>> r["gap"]["seq_add"] <= 1.5 * r["noise_floor"]  # doctest: +SKIP
    True
    """
    t0 = time.perf_counter()
    losses = self_extend_losses(gguf_path, method, tokens, model=model, n_batch=n_batch, n_threads=n_threads)
    return {**parity_report(losses, method, n_batch=n_batch), "seconds": time.perf_counter() - t0}
