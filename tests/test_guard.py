"""ropekit.guard: raise / warn past the covered context, reversible, follows ropekit.patch."""

from __future__ import annotations

import warnings

import pytest
import torch

import ropekit

transformers = pytest.importorskip("transformers")


def _model(**kw):
    conf = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=128,
                                    vocab_size=256, max_position_embeddings=64, **kw)
    return transformers.AutoModelForCausalLM.from_config(conf).eval()


def _fwd(model, start: int, n: int = 8):
    ids = torch.zeros(1, n, dtype=torch.long)
    with torch.no_grad():
        return model(ids, position_ids=torch.arange(start, start + n)[None])


def test_raise_names_context_position_and_remedies() -> None:
    model = _model()
    with ropekit.guard(model):
        _fwd(model, 56)  # last position 63 < 64
        with pytest.raises(ValueError) as exc:
            _fwd(model, 60)
    msg = str(exc.value)
    assert "position 67" in msg and "context 64" in msg
    assert "Linear(factor>=1.07)" in msg and "YaRN(factor=1.07, original_max_position_embeddings=64)" in msg
    _fwd(model, 60)  # undone by the with block


def test_warn_once_and_undo() -> None:
    model = _model()
    handle = ropekit.guard(model, action="warn")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        _fwd(model, 100)
        _fwd(model, 200)
    assert len([w for w in rec if "passes the context" in str(w.message)]) == 1
    handle.undo()
    handle.undo()  # idempotent
    assert not model.model.rotary_emb._forward_pre_hooks


def test_scaled_config_covers_its_extension() -> None:
    model = _model(rope_scaling={"rope_type": "linear", "factor": 2.0}, rope_theta=10000.0)
    with ropekit.guard(model):
        _fwd(model, 120)  # 127 < 64 * 2
        with pytest.raises(ValueError, match="position 135"):
            _fwd(model, 128)


def test_follows_an_active_patch() -> None:
    model = _model()
    with ropekit.patch(model, ropekit.YaRN(factor=4.0, original_max_position_embeddings=64)):
        with ropekit.guard(model):
            _fwd(model, 200)  # YaRN x4 covers 256
            with pytest.raises(ValueError, match="position 263"):
                _fwd(model, 256)


def test_explicit_context_and_bad_arguments() -> None:
    model = _model()
    with ropekit.guard(model, context=16):
        with pytest.raises(ValueError, match="context 16"):
            _fwd(model, 10)
    with pytest.raises(ValueError, match="action"):
        ropekit.guard(model, action="ignore")
    with pytest.raises(ValueError, match="context"):
        ropekit.guard(model, context=0)
    with pytest.raises(TypeError):
        ropekit.guard("not a model")


def test_rearms_when_patched_after_guard() -> None:
    model = _model()
    with ropekit.guard(model):
        with ropekit.patch(model, ropekit.Linear(factor=4.0)):
            _fwd(model, 200)  # the guard followed the patch: linear x4 covers 256
            with pytest.raises(ValueError, match="position 263"):
                _fwd(model, 256)
