"""RopeConfig's dialect methods delegate to ropekit.interop and round-trip; replace() re-derives dims."""

from __future__ import annotations

import pytest

import ropekit
from ropekit import RopeConfig

CFG = RopeConfig(head_dim=64, base=500000.0, max_position_embeddings=65536,
                 scaling=ropekit.YaRN(factor=8.0, original_max_position_embeddings=8192))


def test_hf_round_trip_through_methods() -> None:
    assert RopeConfig.from_hf({"head_dim": 64, "hidden_size": 512, "num_attention_heads": 8, **CFG.to_hf()}) == CFG
    legacy = CFG.to_hf(legacy=True)
    assert "rope_scaling" in legacy
    assert RopeConfig.from_hf({"head_dim": 64, **legacy}) == CFG


def test_vllm_and_llama_cpp_round_trip_through_methods() -> None:
    back = RopeConfig.from_vllm(CFG.to_vllm(), head_dim=64)
    assert back.inv_freq().tolist() == pytest.approx(CFG.inv_freq().tolist(), rel=1e-12)
    assert back.attention_factor == pytest.approx(CFG.attention_factor)
    args = CFG.to_llama_cpp_args()
    assert "--rope-scaling" in args and "yarn" in args
    back = RopeConfig.from_llama_cpp_args(args, head_dim=64)
    assert back.inv_freq().tolist() == pytest.approx(CFG.inv_freq().tolist(), rel=1e-12)


def test_gguf_metadata_method() -> None:
    with pytest.raises(ValueError, match="permute_qk"):  # GGUF llama weights pair GPT-J style
        CFG.to_gguf_metadata("llama")
    meta = CFG.replace(layout="interleaved").to_gguf_metadata("llama")
    assert meta["llama.rope.freq_base"] == 500000.0
    assert meta["llama.rope.scaling.type"] == "yarn"


def test_replace_rederives_dims() -> None:
    base = RopeConfig(head_dim=64)
    assert base.replace(rotary_dim=16).partial_rotary_factor == 0.25
    assert base.replace(partial_rotary_factor=0.5).rotary_dim == 32
    assert base.replace(head_dim=128).rotary_dim == 128
    odd = RopeConfig(head_dim=96, rotary_dim=22)  # 22/96 does not survive int(96 * (22/96)) exactly
    assert odd.replace(scaling=ropekit.Linear(factor=2.0)).rotary_dim == 22
