"""Patch-time verification: a replacement that differs from the model's own computation never installs."""

from __future__ import annotations

import time

import pytest
import torch

import ropekit
from ropekit.patching import PatchVerificationError, patch
from ropekit.patching import fused as fused_mod
from ropekit.patching import handle as handle_mod  # bound at import, like `patch` (a test re-imports the package)
from tests.patching.tiny import VOCAB, tiny_model


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_config_not_applied_by_the_module_is_caught():
    """The module computes another base than its config says: 'parsed but not applied', caught at patch time."""
    model = tiny_model("llama")
    rotary = model.base_model.rotary_emb
    rotary.inv_freq.mul_(0.5)  # what the model runs no longer matches config.rope_parameters
    with pytest.raises(PatchVerificationError, match=r"model_type='llama' \(transformers [0-9.]+\).*rotary module "
                       r"'model.rotary_emb'"):
        patch(model)
    assert model.base_model.rotary_emb is rotary and not hasattr(model, "_ropekit_patch")
    assert not any("forward" in m.__dict__ for m in model.modules())  # nothing half-patched


def _cache_ignoring(family):
    inner = _ORIG(family)

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None, **kw):
        kw.pop("past_key_values", None)  # the 5.24 bug: the cache never reaches the attention
        return inner(self, hidden_states, position_embeddings, attention_mask, None, **kw)

    return forward


_ORIG = fused_mod.fused_forward


def test_fused_path_that_drops_the_cache_is_refused(monkeypatch):
    """The transformers-5.24 break (attention never updating the KV cache) cannot install silently."""
    monkeypatch.setattr(handle_mod, "fused_forward", _cache_ignoring)
    model = tiny_model("llama")
    ids = torch.randint(0, VOCAB, (1, 20), generator=torch.Generator().manual_seed(0))
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    ref = model.generate(ids, **kw)
    with patch(model) as h:  # auto: falls back to the tables path and says why
        assert not h.fused and "cached decode step" in h.fused_refused
        assert torch.equal(model.generate(ids, **kw), ref)
    with pytest.raises(PatchVerificationError, match="cached decode step outputs differ.*needs the fused path"):
        patch(model, backend="cpu")
    assert not hasattr(model, "_ropekit_patch")


def test_verification_is_fast_and_leaves_rng_alone():
    model = tiny_model("qwen3")
    state = torch.random.get_rng_state()
    t = time.perf_counter()
    h = patch(model)
    assert time.perf_counter() - t < 2.0
    assert torch.equal(torch.random.get_rng_state(), state)
    h.undo()


def test_explicit_fused_backend_on_a_type_without_one():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=16)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(cfg).eval()
    with pytest.raises(ValueError, match=r"backend='cpu' runs ropekit's fused attention, available for model types"):
        patch(model, backend="cpu")
    with patch(model) as h:
        assert h.fused_refused.startswith("no fused attention")


def test_training_mode_is_restored_and_undo_is_bit_identical():
    model = tiny_model("mistral").train()
    ids = torch.randint(0, VOCAB, (1, 12))
    model.eval()
    ref = _logits(model, ids)
    model.train()
    h = patch(model, ropekit.Linear(factor=2.0))
    assert model.training  # verification ran in eval mode and put the mode back
    h.undo()
    model.eval()
    assert torch.equal(_logits(model, ids), ref)
