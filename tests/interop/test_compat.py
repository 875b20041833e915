"""compat=: the places where HF, vLLM and llama.cpp compute different frequencies from one config."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit.interop import compat_cos_sin_table, compat_inv_freq, softmax_scale_multiplier


def test_longrope_switch_point(configs):
    cfg = configs["longrope"]
    short = cfg.inv_freq(seq_len=10)
    long = cfg.inv_freq(seq_len=5000)
    assert not torch.equal(short, long)
    # HF follows the current length; vLLM / llama.cpp pick once from the configured context
    assert torch.equal(compat_inv_freq(cfg, compat="hf", seq_len=10), short)
    for mode in ("vllm", "llama.cpp"):
        assert torch.equal(compat_inv_freq(cfg, compat=mode, seq_len=10), long)
        assert torch.equal(compat_inv_freq(cfg, compat=mode, seq_len=10, context=4096), short)


def test_llama_cpp_yarn_agrees_in_the_normal_case(configs):
    cfg = configs["yarn"]
    torch.testing.assert_close(compat_inv_freq(cfg, compat="llama.cpp"), cfg.inv_freq(), rtol=1e-15, atol=0)


def test_llama_cpp_yarn_differs_when_the_correction_range_inverts():
    # L0 so large that floor(cd(beta_fast)) > d - 1 >= high: HF divides by a negative width, llama.cpp by 0.001
    cfg = ropekit.RopeConfig(head_dim=8, base=10000.0,
                             scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=10**12))
    hf, lcpp = cfg.inv_freq(), compat_inv_freq(cfg, compat="llama.cpp")
    theta = ropekit.RopeConfig(head_dim=8).inv_freq()
    torch.testing.assert_close(hf, theta / 4)  # HF: every pair interpolated
    torch.testing.assert_close(lcpp, theta)  # llama.cpp: every pair extrapolated


def test_llama_cpp_has_no_dynamic_ntk(configs):
    with pytest.raises(ValueError, match="no dynamic NTK"):
        compat_inv_freq(configs["dynamic"], compat="llama.cpp")
    with pytest.raises(ValueError, match="Did you mean 'vllm'"):
        compat_inv_freq(configs["dynamic"], compat="vlm")


def test_deepseek_softmax_mscale(configs):
    cfg = configs["yarn_deepseek"]
    assert cfg.attention_factor == 1.0  # the ratio form cancels inside RoPE...
    assert softmax_scale_multiplier(cfg) == pytest.approx((1 + 0.1 * torch.log(torch.tensor(40.0)).item()) ** 2)
    assert softmax_scale_multiplier(configs["yarn"]) == 1.0  # ...and only DeepSeek-style configs carry the square


def test_compat_tables(configs):
    cos, sin = compat_cos_sin_table(configs["longrope"], 16, compat="vllm")
    want_c, want_s = configs["longrope"].cos_sin_table(16, seq_len=131072)
    assert torch.equal(cos, want_c) and torch.equal(sin, want_s)
