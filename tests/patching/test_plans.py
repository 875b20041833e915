"""Hybrid models: per-layer-type RoPE (Gemma-3), NoPE layers (SmolLM3), dict specs, and their bad input."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit.core.plan import RopePlan
from ropekit.patching import patch
from tests.patching.tiny import VOCAB

ATOL = 2e-5


def gemma3(rope_parameters=None, seed=0):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    kw = {} if rope_parameters is None else {"rope_parameters": rope_parameters}
    cfg = Gemma3TextConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=6,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=8,
                           max_position_embeddings=64, **kw)
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(cfg).eval()


LOCAL = {"rope_type": "default", "rope_theta": 10000.0}
GLOBAL = {"rope_type": "default", "rope_theta": 1000000.0}


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, VOCAB, (1, 50), generator=torch.Generator().manual_seed(2))


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_gemma3_plan_and_own_rope(ids):
    model = gemma3({"sliding_attention": LOCAL, "full_attention": GLOBAL})
    plan = RopePlan.from_hf(model.config)
    assert plan.layer_types.count("full_attention") == 1 and plan.for_layer(5).base == 1e6
    assert plan.for_layer(0).base == 1e4
    ref = logits(model, ids)
    with patch(model) as h:
        assert not h.fused and {r["layer_type"]: r["path"] for r in h.describe()} == {
            "sliding_attention": "tables", "full_attention": "tables"}
        torch.testing.assert_close(logits(model, ids), ref, atol=ATOL, rtol=0)
    assert torch.equal(logits(model, ids), ref)


def test_scaling_only_the_global_layers_equals_hf(ids):
    lin8 = {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}
    hf = gemma3({"sliding_attention": LOCAL, "full_attention": lin8})
    ours = gemma3({"sliding_attention": LOCAL, "full_attention": GLOBAL})
    ref = logits(hf, ids)
    stock = logits(ours, ids)
    with patch(ours, {"full_attention": ropekit.Linear(factor=8.0)}) as h:
        assert h.plan.for_layer(5).method == "linear" and h.plan.for_layer(0).method == "default"
        out = logits(ours, ids)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert (out - stock).abs().max() > 100 * ATOL


def test_scaling_every_layer_equals_hf(ids):
    hf = gemma3({"sliding_attention": {**LOCAL, "rope_type": "linear", "factor": 2.0},
                 "full_attention": {**GLOBAL, "rope_type": "linear", "factor": 2.0}})
    ours = gemma3({"sliding_attention": LOCAL, "full_attention": GLOBAL})
    with patch(ours, ropekit.Linear(factor=2.0)):
        torch.testing.assert_close(logits(ours, ids), logits(hf, ids), atol=ATOL, rtol=0)


def test_cached_generation_on_a_hybrid_model():
    model = gemma3({"sliding_attention": LOCAL, "full_attention": GLOBAL})
    prompt = torch.randint(0, VOCAB, (1, 30), generator=torch.Generator().manual_seed(5))
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    ref = model.generate(prompt, **kw)
    with patch(model):
        assert torch.equal(model.generate(prompt, **kw), ref)


def smollm3(**rope):
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

    params = {"rope_type": "default", "rope_theta": 1e4, **rope}
    cfg = SmolLM3Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, no_rope_layers=[1, 1, 1, 0],
                        rope_parameters=params)
    torch.manual_seed(0)
    return SmolLM3ForCausalLM(cfg).eval()


def test_nope_layers_stay_nope(ids):
    model = smollm3()
    plan = RopePlan.from_hf(model.config)
    assert plan.for_layer(3) is None and plan.for_layer(0) is not None
    hf = smollm3(rope_type="yarn", factor=2.0, original_max_position_embeddings=32)
    with patch(model, ropekit.YaRN(factor=2.0, original_max_position_embeddings=32)) as h:
        row = h.describe()[0]
        assert row["nope_layers"] == [3] and h.plan.for_layer(3) is None
        torch.testing.assert_close(logits(model, ids), logits(hf, ids), atol=ATOL, rtol=0)
    assert "NoPE" not in repr(h)  # one type, its RoPE layers named; NoPE layers listed per row


def test_bad_specs_leave_the_model_untouched():
    model = gemma3({"sliding_attention": LOCAL, "full_attention": GLOBAL})
    rotary = model.model.rotary_emb
    with pytest.raises(ValueError, match=r"layer type\(s\) \['global'\] this model does not have.*full_attention"):
        patch(model, {"global": ropekit.Linear(factor=2.0)})
    with pytest.raises(ValueError, match="LongRoPE short_factor/long_factor must have rotary_dim // 2 = 8"):
        patch(model, {"full_attention": ropekit.LongRoPE(short_factor=[1.0] * 4, long_factor=[2.0] * 4,
                                                         original_max_position_embeddings=64)})
    with pytest.raises(TypeError, match="spec for layer type 'full_attention' must be"):
        patch(model, {"full_attention": 8.0})
    with pytest.raises(TypeError, match="keyed by layer type names"):
        patch(model, {5: ropekit.Linear(factor=2.0)})
    assert model.model.rotary_emb is rotary and not hasattr(model, "_ropekit_patch")
    h = patch(model)
    with pytest.raises(ValueError, match="already patched"):
        patch(model, ropekit.Linear(factor=2.0))
    h.undo()
    assert model.model.rotary_emb is rotary


def test_one_table_for_two_types_cannot_split():
    """Qwen2 has sliding/full layer types but one rotary table: scaling one type only is refused by name."""
    from tests.patching.tiny import tiny_model

    model = tiny_model("qwen2", layer_types=["sliding_attention", "full_attention"], use_sliding_window=True,
                       sliding_window=8)
    with pytest.raises(ValueError, match="computes one rotary table .* for layer types"):
        patch(model, {"full_attention": ropekit.Linear(factor=2.0)})
    assert not hasattr(model, "_ropekit_patch")


def test_plan_reading_errors():
    base = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
    with pytest.raises(ValueError, match="layer_types has 3 entries but num_hidden_layers=2"):
        RopePlan.from_hf({**base, "layer_types": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="no entry for layer type 'b'"):
        RopePlan.from_hf({**base, "layer_types": ["a", "b"], "rope_parameters": {"a": LOCAL}})
    with pytest.raises(ValueError, match="no_rope_layers must list one 0/1 flag per layer"):
        RopePlan.from_hf({**base, "no_rope_layers": [1]})
    with pytest.raises(ValueError, match="RopePlan.from_hf"):
        ropekit.RopeConfig.from_hf({**base, "layer_types": ["a", "b"], "rope_parameters": {"a": LOCAL, "b": GLOBAL}})
    plan = RopePlan.from_hf({**base, "layer_types": ["a", "b"], "rope_parameters": {"a": LOCAL, "b": None}})
    assert plan.for_layer(1) is None and plan.rope_types == ("a",)
    with pytest.raises(ValueError, match="do not use RoPE"):
        plan.with_scaling({"b": ropekit.Linear(factor=2.0)})


def test_gemma3_legacy_keys_read_like_transformers():
    """rope_scaling + rope_local_base_freq (Gemma-3 1B+ config.json): the plan equals transformers' reading."""
    from transformers import Gemma3TextConfig

    d = {"hidden_size": 64, "num_attention_heads": 4, "head_dim": 16, "num_hidden_layers": 6,
         "max_position_embeddings": 64, "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
         "rope_theta": 1e6, "rope_local_base_freq": 1e4, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}
    ours = RopePlan.from_hf({"model_type": "gemma3_text", **d})
    theirs = RopePlan.from_hf(Gemma3TextConfig(**d))
    assert ours.by_type == theirs.by_type
    assert ours.by_type["sliding_attention"].scaling is None and ours.by_type["full_attention"].method == "linear"
