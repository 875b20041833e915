"""Extension methods inside patched HF models: identity settings equal stock, cached decode equals the full
forward, undo restores the model exactly, bad parameters and padded batches raise."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit.extension import DualChunk, DynamicYaRN, LeakyReRoPE, ReRoPE, SelfExtend
from ropekit.patching.verify import cache_kwargs, returned_cache
from ropekit.patching.zoo import tiny_model

FAMILIES = ("llama", "qwen3", "gemma3_text", "mistral", "phi3", "cohere", "gpt_neox")
N = 70  # tokens; the tiny models' context is 2048, the methods below act far inside it
DECODING = [SelfExtend(group_size=4, window=8), DualChunk(chunk_size=24, local_size=6), ReRoPE(window=10),
            LeakyReRoPE(window=8, slope=4.0)]


def _ids(n: int = N) -> torch.Tensor:
    return ((torch.arange(n) * 37 + 11) % 250)[None]


@torch.no_grad()
def _full_and_decoded(model, ids):
    full = model(ids).logits
    out = model(ids[:, :-3], use_cache=True)
    cache = returned_cache(out)
    steps = []
    for t in range(ids.shape[1] - 3, ids.shape[1]):
        step = model(ids[:, t:t + 1], use_cache=True, **cache_kwargs(model, cache))
        cache = returned_cache(step)
        steps.append(step.logits[:, -1])
    return full, torch.stack(steps, 1)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) <= 1e-4 * max(1.0, float(a.abs().max()))


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request):
    # mistral's tiny config slides an 8-token window over every layer, inside which no method acts;
    # gemma3_text keeps its sliding layers (window 8) next to full ones
    model, _ = tiny_model(request.param, **({"sliding_window": None} if request.param == "mistral" else {}))
    return model


@torch.no_grad()
def test_identity_settings_equal_stock_and_undo_restores(tiny):
    ids = _ids()
    stock = tiny(ids).logits
    impl = tiny.config._attn_implementation
    identities = (SelfExtend(group_size=1, window=8), ReRoPE(window=N), DynamicYaRN(original_max_position_embeddings=N))
    for method in identities:
        with ropekit.patch(tiny, method) as h:
            assert tiny.config._attn_implementation == "ropekit_extension"
            assert _close(stock, tiny(ids).logits), method
            assert h.method is method and h.plan.num_layers == tiny.config.num_hidden_layers
        assert tiny.config._attn_implementation == impl and not hasattr(tiny, "_ropekit_patch")
        assert not any(hasattr(m, "_ropekit_extension") for m in tiny.modules())
        assert torch.equal(tiny(ids).logits, stock)


@pytest.mark.parametrize("method", DECODING, ids=lambda m: m.method)
def test_cached_decode_equals_full_forward(tiny, method):
    stock = tiny(_ids()).logits
    with ropekit.patch(tiny, method):
        full, decoded = _full_and_decoded(tiny, _ids())
    assert _close(full[:, -3:], decoded)
    assert not _close(full, stock.detach())  # the method did act on this length


@pytest.mark.parametrize("family", ["llama", "cohere"])
def test_dynamic_yarn_decode_equals_full_forward_on_one_layer(family):
    # with one layer the cached keys come straight from the embeddings, so re-rotating them to the current
    # factor must give exactly the full forward; deeper layers keep earlier tokens' states (see DynamicYaRN)
    model, _ = tiny_model(family, num_hidden_layers=1)
    with ropekit.patch(model, DynamicYaRN(original_max_position_embeddings=32)):
        full, decoded = _full_and_decoded(model, _ids())
    assert _close(full[:, -3:], decoded)


@torch.no_grad()
def _batched(model, ids, batch):
    """Logits of ``ids`` fed ``batch`` tokens per forward call with a KV cache (llama.cpp's batches)."""
    cache, logits = None, []
    for s in range(0, ids.shape[1], batch):
        out = model(ids[:, s:s + batch], use_cache=True, **(cache_kwargs(model, cache) if cache is not None else {}))
        cache = returned_cache(out)
        logits.append(out.logits)
    return torch.cat(logits, 1)


@torch.no_grad()
def test_llama_cpp_self_extend_groups_between_calls_only(tiny):
    ids = _ids()
    stock, paper = tiny(ids).logits, None
    with ropekit.patch(tiny, SelfExtend(group_size=4, window=8)):
        paper = tiny(ids).logits
    with ropekit.patch(tiny, SelfExtend(group_size=4, window=8, compat="llama.cpp")):
        assert _close(stock, tiny(ids).logits)  # one call is one llama.cpp batch: nothing grouped inside it
        got = _batched(tiny, ids, 16)
    assert _close(stock[:, :16], got[:, :16])  # the first batch sees no cache to group
    assert not _close(stock[:, 16:], got[:, 16:]) and not _close(paper[:, 16:], got[:, 16:])
    assert _close(_batched(tiny, ids, 16), stock)  # undone: batched calls are stock again


def test_bad_parameters_and_inputs_raise():
    model, _ = tiny_model("llama")
    for method, match in ((SelfExtend(group_size=4, window=4096), "window"),
                          (DualChunk(chunk_size=4096, local_size=16), "chunk_size")):
        with pytest.raises(ValueError, match=match):
            ropekit.patch(model, method)
        assert not hasattr(model, "_ropekit_patch")
    with ropekit.patch(model, SelfExtend(group_size=2, window=8)):
        mask = torch.ones(1, N, dtype=torch.long)
        mask[0, :5] = 0
        with pytest.raises(ValueError, match="padded"):
            model(_ids(), attention_mask=mask)
        with pytest.raises(ValueError, match="already patched"):
            ropekit.patch(model, ReRoPE(window=4))
    with pytest.raises(ValueError, match="already scales"):
        scaled, _ = tiny_model("llama", rope_scaling={"rope_type": "linear", "factor": 2.0})
        ropekit.patch(scaled, DynamicYaRN(original_max_position_embeddings=64))


@pytest.fixture(scope="module")
def smollm2():
    model, tok = ropekit.load_model("smollm2-135m")
    from ropekit.eval.text import resolve_text, token_windows

    return model, token_windows(tok, resolve_text("stdlib"), 300, 1)[0].ids[None]


@torch.no_grad()
def test_smollm2_identity_and_decode(smollm2):
    model, ids = smollm2
    stock = model(ids).logits
    for method in (SelfExtend(group_size=1, window=64), ReRoPE(window=300)):
        with ropekit.patch(model, method):
            assert _close(stock, model(ids).logits), method
    with ropekit.patch(model, SelfExtend(group_size=4, window=64)):
        full, decoded = _full_and_decoded(model, ids)
    assert _close(full[:, -3:], decoded) and not _close(full, stock)
