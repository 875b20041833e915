"""vLLM dialect: get_rope kwargs round trip, and what vLLM computes from its extra keys."""

from __future__ import annotations

import math

import pytest
import torch

import ropekit
from ropekit.core.frequencies import yarn_mscale
from ropekit.interop import compat_inv_freq, from_vllm, to_vllm


@pytest.mark.parametrize("name", ["default", "partial", "linear", "ntk", "yarn", "yarn_attn", "yarn_deepseek",
                                  "yarn_notrunc", "longrope", "llama3"])
def test_round_trip(configs, name):
    cfg = configs[name]
    out = to_vllm(cfg)
    assert set(out) == {"head_size", "rotary_dim", "max_position", "base", "is_neox_style", "rope_scaling"}
    back = from_vllm(out)
    if name == "yarn_attn":  # vLLM has no attention_factor key it always honours: it becomes attn_factor
        assert math.isclose(back.attention_factor, 1.25, rel_tol=1e-12)
        back = back.replace(scaling=ropekit.YaRN(**{**back.scaling.__dict__, "attention_factor": 1.25}))
    assert back == cfg


def test_interleaved_and_bare_dicts(configs):
    cfg = configs["linear"].replace(layout="interleaved")
    out = to_vllm(cfg)
    assert out["is_neox_style"] is False
    assert from_vllm(out) == cfg
    bare = from_vllm(out["rope_scaling"], head_dim=64, base=10000.0, max_position=8192, is_neox_style=False)
    assert bare == cfg


def test_vllm_semantics_of_its_keys():
    kw = {"head_dim": 64, "base": 10000.0, "max_position": 4096}
    # dynamic + factor: frozen at L0 * s  ==  static NTK alpha = s^2 - s + 1, and equal to compat="vllm"
    cfg = from_vllm({"rope_type": "dynamic", "factor": 2.0}, **kw)
    assert cfg.scaling == ropekit.NTK(alpha=3.0)
    hf_dyn = ropekit.RopeConfig(head_dim=64, base=10000.0, max_position_embeddings=4096,
                                scaling=ropekit.DynamicNTK(factor=2.0, original_max_position_embeddings=4096))
    torch.testing.assert_close(cfg.inv_freq(), compat_inv_freq(hf_dyn, compat="vllm"), rtol=1e-12, atol=0)
    torch.testing.assert_close(cfg.inv_freq(), hf_dyn.inv_freq(seq_len=8192), rtol=1e-12, atol=0)
    # yarn attn_factor multiplies g(s); apply_yarn_scaling=False drops g(s)
    y = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}
    assert math.isclose(from_vllm(y | {"attn_factor": 0.5}, **kw).attention_factor, 0.5 * yarn_mscale(4.0))
    assert from_vllm(y | {"apply_yarn_scaling": False}, **kw).attention_factor == 1.0
    # deepseek_yarn: mscale_all_dim defaults to 0 in vLLM (HF would fall back to g(s))
    ds = from_vllm(y | {"rope_type": "deepseek_yarn", "mscale": 2.0}, **kw)
    assert math.isclose(ds.attention_factor, yarn_mscale(4.0, 2.0))
    # longrope: equal short/long mscale is the attention factor
    lr = {"rope_type": "longrope", "short_factor": [1.0] * 32, "long_factor": [2.0] * 32,
          "original_max_position_embeddings": 1024, "short_mscale": 1.1, "long_mscale": 1.1}
    assert from_vllm(lr, **kw).attention_factor == 1.1


@pytest.mark.parametrize(("rs", "match"), [
    ({"rope_type": "ntk", "factor": 2.0, "mixed_b": 0.5}, "mixed_b"),
    ({"rope_type": "yarn", "factor": 2.0, "extrapolation_factor": 0.5}, "extrapolation_factor"),
    ({"rope_type": "yarn", "factor": 2.0, "beta_fats": 8}, "Did you mean 'beta_fast'"),
    ({"rope_type": "yran", "factor": 2.0}, "Did you mean 'yarn'"),
    ({"rope_type": "longrope", "short_factor": [1.0] * 32, "long_factor": [1.0] * 32, "short_mscale": 1.0,
      "long_mscale": 1.2}, "one attention factor"),
    ({"rope_type": "ntk", "factor": 2.0}, "no ropekit equivalent"),
])
def test_unrepresentable_vllm_keys_raise(rs, match):
    with pytest.raises(ValueError, match=match):
        from_vllm(rs, head_dim=64, base=1e4, max_position=4096)


def test_missing_arguments_and_unwritable_configs(configs):
    with pytest.raises(ValueError, match="head_dim"):
        from_vllm({"rope_type": "linear", "factor": 2.0}, base=1e4)
    with pytest.raises(ValueError, match="base"):
        from_vllm({"rope_type": "linear", "factor": 2.0}, head_dim=64)
    with pytest.raises(ValueError, match="freezes the base"):
        to_vllm(configs["dynamic"])
    with pytest.raises(ValueError, match="proportional"):
        to_vllm(configs["proportional"])
