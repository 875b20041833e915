"""Reading HF configs: v5 rope_parameters, legacy rope_scaling, nesting, partial rotary, layouts."""

from __future__ import annotations

import pytest

import ropekit
from ropekit import RopeConfig
from ropekit.testing.hf_grid import GPT_NEOX_20B, LLAMA31_8B, phi3_mini_128k

transformers = pytest.importorskip("transformers")


def test_legacy_and_v5_forms_agree() -> None:
    legacy = RopeConfig.from_hf(LLAMA31_8B)
    v5 = dict(LLAMA31_8B)
    v5["rope_parameters"] = {**v5.pop("rope_scaling"), "rope_theta": v5.pop("rope_theta")}
    assert RopeConfig.from_hf(v5) == legacy
    assert legacy.scaling == ropekit.Llama3(factor=8.0, original_max_position_embeddings=8192)


def test_pretrained_config_object_is_read() -> None:
    from transformers import LlamaConfig

    d = {k: v for k, v in LLAMA31_8B.items() if k != "model_type"}
    assert RopeConfig.from_hf(LlamaConfig(**d)) == RopeConfig.from_hf(LLAMA31_8B)


def test_phi3_top_level_original_context_and_factor_fallback() -> None:
    cfg = RopeConfig.from_hf(phi3_mini_128k())
    assert isinstance(cfg.scaling, ropekit.LongRoPE)
    assert cfg.scaling.original_max_position_embeddings == 4096
    assert cfg.scaling.factor == 131072 / 4096
    assert cfg.head_dim == 96 and len(cfg.scaling.long_factor) == 48


def test_gpt_neox_partial_and_gptj_layout() -> None:
    neox = RopeConfig.from_hf(GPT_NEOX_20B)
    assert (neox.head_dim, neox.rotary_dim, neox.layout) == (96, 24, "half")
    gptj = RopeConfig.from_hf({"model_type": "gptj", "n_embd": 4096, "hidden_size": 4096,
                               "num_attention_heads": 16, "rotary_dim": 64})
    assert (gptj.head_dim, gptj.rotary_dim, gptj.layout) == (256, 64, "interleaved")


def test_nested_per_layer_type() -> None:
    d = {"hidden_size": 1024, "num_attention_heads": 8, "max_position_embeddings": 8192,
         "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}
    assert RopeConfig.from_hf(d, layer_type="full_attention").base == 1e6
    assert RopeConfig.from_hf(d, layer_type="sliding_attention").base == 1e4
    with pytest.raises(ValueError, match=r"ropekit.RopePlan.from_hf\(config\), or one type with layer_type="):
        RopeConfig.from_hf(d)
    with pytest.raises(ValueError, match="Did you mean 'full_attention'"):
        RopeConfig.from_hf(d, layer_type="full_atention")
