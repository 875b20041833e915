"""ropekit.patch against the peer itself: HF's own models, built from configs with the same weights."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit.patching import patch
from tests.patching.tiny import FAMILIES, VOCAB, tiny_model

# fp32 model, float64-vs-float32 angles: differences come from HF's fp32 angle rounding (~1e-7 rel.)
ATOL = 2e-5
BACKENDS = ("tables", "reference", "auto")
THETA = 10000.0
L0 = 64  # tiny models' trained context (max_position_embeddings)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB, (2, 3 * L0 // 2 + 7), generator=g)  # past L0, so scaling matters


def logits(model, ids, **kw):
    with torch.no_grad():
        return model(ids, **kw).logits


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_own_rope_matches_stock(family, backend, ids):
    model = tiny_model(family)
    ref = logits(model, ids)
    with patch(model, backend=backend) as handle:
        assert handle.active and model._ropekit_patch is handle
        assert handle.fused == (backend != "tables")  # these four families have verified fused attention
        out = logits(model, ids)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert torch.equal(logits(model, ids), ref)  # undone: bit-identical to never patched


SCALINGS = {
    "linear": ({"rope_type": "linear", "factor": 2.0}, ropekit.Linear(factor=2.0)),
    "dynamic": (
        {"rope_type": "dynamic", "factor": 2.0},
        ropekit.DynamicNTK(factor=2.0, original_max_position_embeddings=L0),
    ),
    "yarn": (
        {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": L0},
        ropekit.YaRN(factor=2.0, original_max_position_embeddings=L0),
    ),
    "llama3": (
        {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 32, "low_freq_factor": 1.0,
         "high_freq_factor": 4.0},
        ropekit.Llama3(factor=8.0, original_max_position_embeddings=32),
    ),
    "longrope": (
        {"rope_type": "longrope", "factor": 4.0, "original_max_position_embeddings": L0,
         "short_factor": [1.0 + 0.1 * i for i in range(8)], "long_factor": [1.0 + 0.5 * i for i in range(8)]},
        ropekit.LongRoPE(short_factor=[1.0 + 0.1 * i for i in range(8)], long_factor=[1.0 + 0.5 * i for i in range(8)],
                         original_max_position_embeddings=L0, factor=4.0),
    ),
}


@pytest.mark.parametrize("method", list(SCALINGS))
@pytest.mark.parametrize("family", ["llama", "qwen3"])
@pytest.mark.parametrize("length", [L0 // 2, 3 * L0 // 2 + 7])  # inside and past the trained context
def test_scaling_matches_hf_implementation(family, method, length, ids):
    hf_params, scaling = SCALINGS[method]
    hf_model = tiny_model(family, {"rope_theta": THETA, **hf_params})
    ours = tiny_model(family)  # same weights, default RoPE
    x = ids[:, :length]
    ref = logits(hf_model, x)
    stock = logits(ours, x)
    with patch(ours, scaling):
        out = logits(ours, x)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    if length > L0 or method in ("linear", "llama3", "longrope", "yarn"):
        assert (out - stock).abs().max() > 100 * ATOL  # the scaling really changed something


def test_full_ropeconfig_and_scaling_shorthand_agree(ids):
    model = tiny_model("llama")
    yarn = ropekit.YaRN(factor=2.0, original_max_position_embeddings=L0)
    with patch(model, yarn) as h:
        a = logits(model, ids)
        assert h.config.scaling == yarn and h.config.base == THETA
    cfg = ropekit.RopeConfig(head_dim=16, base=THETA, scaling=yarn)
    with patch(model, cfg):
        b = logits(model, ids)
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["dynamic", "yarn"])
def test_generate_with_kv_cache_matches_hf(method):
    """Decode steps (positions past the prompt, cache) follow HF, including dynamic NTK's growing base."""
    hf_params, scaling = SCALINGS[method]
    hf_model = tiny_model("llama", {"rope_theta": THETA, **hf_params})
    ours = tiny_model("llama")
    prompt = torch.randint(0, VOCAB, (1, L0 + 5), generator=torch.Generator().manual_seed(3))
    kw = dict(max_new_tokens=6, do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0)
    ref = hf_model.generate(prompt, **kw)
    with patch(ours, scaling):
        out = ours.generate(prompt, **kw)
    assert torch.equal(out.sequences, ref.sequences)
    for a, b in zip(out.logits, ref.logits):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_left_padded_batch_generate_matches_stock():
    """Per-row position ids (batch, seqlen) from left padding."""
    model = tiny_model("qwen2")
    ids = torch.randint(3, VOCAB, (2, 20), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[0, :7] = 0
    kw = dict(attention_mask=mask, max_new_tokens=5, do_sample=False, output_logits=True,
              return_dict_in_generate=True, pad_token_id=0)
    ref = model.generate(ids, **kw)
    with patch(model):
        out = model.generate(ids, **kw)
    assert torch.equal(out.sequences, ref.sequences)
    torch.testing.assert_close(torch.stack(out.logits), torch.stack(ref.logits), atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_backward_matches_stock(backend, ids):
    model = tiny_model("llama")
    x = ids[:, :40]

    def grads():
        model.zero_grad()
        model(x, labels=x).loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    ref = grads()
    with patch(model, backend=backend):
        out = grads()
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
