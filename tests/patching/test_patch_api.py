"""PatchHandle lifecycle (undo restores exactly, context manager, no import-time patching) and bad input."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

import ropekit
from ropekit.models import rope_config_of
from ropekit.patching import patch
from tests.patching.tiny import VOCAB, tiny_model


def _snapshot(model):
    attn = [m for m in model.modules() if type(m).__name__.endswith("Attention")]
    return (
        model.base_model.rotary_emb,
        [dict(m.__dict__) for m in attn],
        {k: v.clone() for k, v in model.state_dict().items()},
        [n for n, _ in model.named_modules()],
    )


def test_undo_restores_modules_state_and_structure():
    model = tiny_model("mistral")
    rotary, attn_dicts, state, names = _snapshot(model)
    h = patch(model, ropekit.Linear(factor=4.0))
    assert model.base_model.rotary_emb is not rotary
    assert "forward" in model.base_model.layers[0].self_attn.__dict__
    h.undo()
    h.undo()  # idempotent
    r2, d2, s2, n2 = _snapshot(model)
    assert r2 is rotary and d2 == attn_dicts and n2 == names
    assert s2.keys() == state.keys() and all(torch.equal(s2[k], state[k]) for k in state)
    assert not hasattr(model, "_ropekit_patch") and not h.active
    assert "undone" in repr(h)


def test_context_manager_undoes_on_error():
    model = tiny_model("llama")
    rotary = model.base_model.rotary_emb
    with pytest.raises(RuntimeError, match="boom"), patch(model):
        raise RuntimeError("boom")
    assert model.base_model.rotary_emb is rotary


def test_rope_config_of_follows_the_patch():
    model = tiny_model("llama")
    own = rope_config_of(model)
    assert own.method == "default" and own.base == 10000.0 and own.head_dim == 16
    with patch(model, ropekit.YaRN(factor=2.0, original_max_position_embeddings=64)):
        assert rope_config_of(model).method == "yarn"
    assert rope_config_of(model) == own


def test_patched_state_dict_and_to_device_unchanged():
    model = tiny_model("qwen2")
    keys = set(model.state_dict())
    with patch(model):
        assert set(model.state_dict()) == keys  # no new persistent buffers or parameters
        model.to(torch.float64)  # moving/casting a patched model keeps working (angles stay float64)
        x = torch.randint(0, VOCAB, (1, 9))
        with torch.no_grad():
            assert model(x).logits.dtype == torch.float64


def test_import_does_not_patch():
    for name in list(sys.modules):
        if name.startswith("ropekit.patching"):
            del sys.modules[name]
    model = tiny_model("llama")
    rotary = model.base_model.rotary_emb
    importlib.import_module("ropekit.patching")
    importlib.import_module("ropekit.patching.fused")
    assert model.base_model.rotary_emb is rotary
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_bad_input():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="already patched"), patch(model):
        patch(model)
    with pytest.raises(ValueError, match="backend='refrence' is not one of .*Did you mean 'reference'"):
        patch(model, backend="refrence")
    with pytest.raises(TypeError, match="spec must be"):
        patch(model, ["yarn"])
    with pytest.raises(ValueError, match=r"layer type\(s\) \['rope_type'\] this model does not have"):
        patch(model, {"rope_type": "yarn"})
    with pytest.raises(ValueError, match="has head_dim=32, but those layers rotate head_dim=16"):
        patch(model, ropekit.RopeConfig(head_dim=32))
    with pytest.raises(ValueError, match="layout='interleaved'.* rotates layout='half', rotary_dim=16 in its own code"):
        patch(model, ropekit.RopeConfig(head_dim=16, layout="interleaved"), backend="tables")
    with pytest.raises(ValueError, match="LongRoPE short_factor/long_factor must have rotary_dim // 2 = 8"):
        patch(model, ropekit.LongRoPE(short_factor=[1.0], long_factor=[1.0], original_max_position_embeddings=64))
    assert not hasattr(model, "_ropekit_patch")

    class Fake:
        config = None

    with pytest.raises(TypeError, match="model must be a loaded Hugging Face model"):
        patch(Fake())


def test_interleaved_layout_on_ropekit_backend_changes_the_model():
    """Layouts other than HF's run on ropekit backends (e.g. after permuting the weights)."""
    model = tiny_model("llama")
    x = torch.randint(0, VOCAB, (1, 12))
    with torch.no_grad():
        ref = model(x).logits
        with patch(model, ropekit.RopeConfig(head_dim=16, layout="interleaved")):
            out = model(x).logits
    assert (out - ref).abs().max() > 1e-4
