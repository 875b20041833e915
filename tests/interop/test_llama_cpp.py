"""llama.cpp CLI dialect, checked against an element-wise model of ggml's rope op (ggml_rope_yarn)."""

from __future__ import annotations

import math

import pytest
import torch

import ropekit
from ropekit.interop import from_llama_cpp_args, to_llama_cpp_args
from ropekit.interop.llama_cpp import parse_llama_cpp_args


def ggml_rope_cos_sin(pos: int, n_dims: int, freq_base: float, freq_scale: float, ext_factor: float,
                      attn_factor: float, beta_fast: float, beta_slow: float, n_ctx_orig: int):
    """One position's (cos, sin) per pair as ggml computes them (rope_yarn + corr dims), in float64."""
    def corr_dim(n_rot):
        return n_dims * math.log(n_ctx_orig / (n_rot * 2 * math.pi)) / (2 * math.log(freq_base))

    low = max(0.0, math.floor(corr_dim(beta_fast)))
    high = min(n_dims - 1.0, math.ceil(corr_dim(beta_slow)))
    cos, sin = [], []
    for i0 in range(0, n_dims, 2):
        theta_extrap = pos * freq_base ** (-i0 / n_dims)
        theta_interp = freq_scale * theta_extrap
        theta, mscale = theta_interp, attn_factor
        if ext_factor != 0.0:
            y = (i0 / 2 - low) / max(0.001, high - low)
            ramp_mix = (1 - min(1.0, max(0.0, y))) * ext_factor
            theta = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix
            mscale *= 1.0 + 0.1 * math.log(1.0 / freq_scale)  # the implicit YaRN attention factor
        cos.append(math.cos(theta) * mscale)
        sin.append(math.sin(theta) * mscale)
    return torch.tensor(cos, dtype=torch.float64), torch.tensor(sin, dtype=torch.float64)


def _flag_values(args: list[str]) -> dict:
    f = parse_llama_cpp_args(args)
    return {
        "freq_base": float(f["--rope-freq-base"]),
        "freq_scale": 1 / float(f.get("--rope-scale", 1)),
        "ext_factor": float(f.get("--yarn-ext-factor", 0)),
        "attn_factor": float(f.get("--yarn-attn-factor", 1)),
        "beta_fast": float(f.get("--yarn-beta-fast", 32)),
        "beta_slow": float(f.get("--yarn-beta-slow", 1)),
        "n_ctx_orig": int(f.get("--yarn-orig-ctx", 4096)),
    }


@pytest.mark.parametrize("name", ["default", "linear", "ntk", "yarn", "yarn_attn", "yarn_deepseek"])
def test_flags_reproduce_cos_sin_in_ggml_semantics(configs, name):
    cfg = configs[name]
    args = to_llama_cpp_args(cfg)
    v = _flag_values(args)
    for p in (0, 1, 777, 50_000):
        cos, sin = ggml_rope_cos_sin(p, cfg.rotary_dim, **v)
        c, s = cfg.cos_sin(torch.tensor([p]))
        torch.testing.assert_close(c[0].double(), cos, rtol=0, atol=2e-6)
        torch.testing.assert_close(s[0].double(), sin, rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", ["default", "linear", "yarn", "yarn_attn"])
def test_round_trip(configs, name):
    cfg = configs[name]
    back = from_llama_cpp_args(to_llama_cpp_args(cfg), head_dim=cfg.head_dim)
    want = cfg.replace(max_position_embeddings=None)  # flags carry no context length
    if name == "yarn_attn":
        assert math.isclose(back.attention_factor, cfg.attention_factor, rel_tol=1e-12)
        back = back.replace(scaling=ropekit.YaRN(**{**back.scaling.__dict__, "attention_factor": 1.25}))
    assert back == want


def test_deepseek_ratio_becomes_its_effective_factor(configs):
    cfg = configs["yarn_deepseek"]
    back = from_llama_cpp_args(to_llama_cpp_args(cfg), head_dim=64)
    torch.testing.assert_close(back.inv_freq(), cfg.inv_freq(), rtol=0, atol=0)
    assert math.isclose(back.attention_factor, cfg.attention_factor, rel_tol=1e-12)


@pytest.mark.parametrize("name", ["llama3", "longrope", "dynamic", "proportional", "yarn_notrunc"])
def test_unexpressible_configs_raise(configs, name):
    with pytest.raises(ValueError, match="cannot be expressed|cannot express"):
        to_llama_cpp_args(configs[name])


def test_llama_cpp_flag_semantics():
    base = {"head_dim": 64, "base": 10000.0}
    # freq_scale = 1 / scale
    assert from_llama_cpp_args(["--rope-scaling", "linear", "--rope-freq-scale", "0.25"], **base).scaling == \
        ropekit.Linear(factor=4.0)
    assert from_llama_cpp_args("--rope-scaling=linear --rope-scale=4", **base).scaling == ropekit.Linear(factor=4.0)
    # --rope-freq-base overrides the model's base
    assert from_llama_cpp_args(["--rope-freq-base", "500000"], **base).base == 500000.0
    # ext_factor 0 turns YaRN into plain interpolation (and no implicit attention factor)
    cfg = from_llama_cpp_args("--rope-scaling yarn --rope-scale 4 --yarn-ext-factor 0", **base)
    assert cfg.scaling == ropekit.Linear(factor=4.0) and cfg.attention_factor == 1.0
    # --yarn-attn-factor multiplies llama.cpp's implicit 1 + 0.1 ln s
    cfg = from_llama_cpp_args("--rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 2048 --yarn-attn-factor 0.5", **base)
    assert math.isclose(cfg.attention_factor, 0.5 * (1 + 0.1 * math.log(4)))
    # unspecified orig ctx comes from the model
    cfg = from_llama_cpp_args("--rope-scaling yarn --rope-scale 4", **base, n_ctx_train=4096)
    assert cfg.scaling.original_max_position_embeddings == 4096


@pytest.mark.parametrize(("args", "match"), [
    ("--rope-scaling linear --rope-scale 4", "no base"),
    ("--rope-scaling yarn --rope-scale 4", "n_ctx_train"),
    ("--rope-scaling none --rope-scale 4", "ignores the scale"),
    ("--rope-scale 4", "--rope-scaling"),
    ("--rope-scaling linear --rope-scale 4 --rope-freq-scale 0.5", "disagree"),
    ("--rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 64 --yarn-ext-factor 0.5", "ext"),
    ("--rope-scaling yarm", "Did you mean 'yarn'"),
    ("--rope-scael 4", "Did you mean"),
    ("--rope-scale", "needs a value"),
    ("--rope-scaling linear --rope-scale four", "needs a number"),
    ("--rope-freq-base 1e4 --grp-attn-n 4 --grp-attn-w 512", "Self-Extend"),  # moves positions: never skipped
    ("-c 32768 -gan 4 -gaw 512", "compat='llama.cpp'"),
    ("--grp-attn-w=512", "--grp-attn-w"),
])
def test_bad_flags_raise(args, match):
    kw = {"head_dim": 64} if "no base" in match else {"head_dim": 64, "base": 1e4}
    with pytest.raises(ValueError, match=match):
        from_llama_cpp_args(args, **kw)
