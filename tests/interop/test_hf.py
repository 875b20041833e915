"""HF dialect: to_hf -> transformers' own config classes -> from_hf, and HF's ROPE_INIT_FUNCTIONS as the peer."""

from __future__ import annotations

import json
import math

import pytest
import torch

import ropekit
from ropekit.interop import from_hf, to_hf, to_hf_per_layer_type

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

HF_NAMES = ["default", "partial", "linear", "dynamic", "yarn", "yarn_attn", "yarn_deepseek", "yarn_notrunc",
            "longrope", "llama3", "proportional"]


def _llama(d: dict) -> LlamaConfig:
    return LlamaConfig(hidden_size=d["head_dim"] * 4, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=32, num_hidden_layers=1, vocab_size=32, **d)


def _hf_inv_freq(hf_cfg, rope_type: str, seq_len: int | None, layer_type: str | None = None):
    if rope_type == "default":
        inv = 1.0 / (hf_cfg.rope_parameters["rope_theta"]
                     ** (torch.arange(0, hf_cfg.head_dim, 2, dtype=torch.float) / hf_cfg.head_dim))
        return inv, 1.0
    kw = {} if layer_type is None else {"layer_type": layer_type}
    return ROPE_INIT_FUNCTIONS[rope_type](hf_cfg, "cpu", seq_len=seq_len, **kw)


@pytest.mark.parametrize("legacy", [False, True], ids=["rope_parameters", "legacy"])
@pytest.mark.parametrize("name", HF_NAMES)
def test_round_trip_through_transformers(configs, name, legacy):
    cfg = configs[name]
    d = to_hf(cfg, legacy=legacy)
    hf_cfg = _llama(d)
    assert from_hf(hf_cfg) == cfg
    # what save_pretrained writes, read back as a plain config.json dict
    assert from_hf(json.loads(json.dumps(hf_cfg.to_dict()))) == cfg
    assert from_hf(d | {"hidden_size": cfg.head_dim * 4, "num_attention_heads": 4}) == cfg


@pytest.mark.parametrize("name", HF_NAMES)
def test_frequencies_match_hf_init_functions(configs, name):
    cfg = configs[name]
    hf_cfg = _llama(to_hf(cfg))
    rope_type = hf_cfg.rope_parameters["rope_type"]
    if name == "partial":  # Llama's default init ignores partial_rotary_factor; linear x1 honours it
        hf_cfg = _llama(to_hf(cfg.replace(scaling=ropekit.Linear(factor=1.0))))
        rope_type = "linear"
    lengths = [None]
    if cfg.scaling is not None and cfg.scaling.depends_on_seq_len:
        L0 = cfg.original_max_position_embeddings
        lengths = [L0 // 2, L0, L0 + 1, 3 * L0]
    for seq_len in lengths:
        inv_hf, attn_hf = _hf_inv_freq(hf_cfg, rope_type, seq_len)
        inv = cfg.inv_freq(seq_len)
        assert inv.shape == inv_hf.shape
        torch.testing.assert_close(inv.float(), inv_hf.float(), rtol=2e-6, atol=0)
        assert math.isclose(cfg.attention_factor, float(attn_hf), rel_tol=1e-6)


def test_per_layer_type_round_trip_with_gemma3():
    from transformers import Gemma3TextConfig

    full = ropekit.RopeConfig(head_dim=32, base=1e6, max_position_embeddings=4096, scaling=ropekit.Linear(factor=8.0))
    local = full.replace(base=1e4, scaling=None)
    out = to_hf_per_layer_type({"full_attention": full, "sliding_attention": local})
    hf_cfg = Gemma3TextConfig(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=2,
                              intermediate_size=32, vocab_size=32, layer_types=["sliding_attention", "full_attention"],
                              **out)
    assert from_hf(hf_cfg, layer_type="full_attention") == full
    assert from_hf(hf_cfg, layer_type="sliding_attention") == local
    inv_hf, _ = ROPE_INIT_FUNCTIONS["linear"](hf_cfg, "cpu", layer_type="full_attention")
    torch.testing.assert_close(full.inv_freq().float(), inv_hf, rtol=2e-6, atol=0)
    with pytest.raises(ValueError, match="layer_type"):
        from_hf(hf_cfg)
    with pytest.raises(ValueError, match="share head_dim"):
        to_hf_per_layer_type({"full_attention": full, "sliding_attention": local.replace(head_dim=64)})


def test_layout_needs_an_interleaved_model_type(configs):
    inter = configs["default"].replace(layout="interleaved")
    with pytest.raises(ValueError, match="permute_qk"):
        to_hf(inter)
    d = to_hf(inter, model_type="gptj")
    assert from_hf(d | {"hidden_size": 256, "num_attention_heads": 4}) == inter
    with pytest.raises(ValueError, match="interleaved"):
        to_hf(configs["default"], model_type="gptj")


def test_unexpressible_configs_raise(configs):
    with pytest.raises(ValueError, match="static-NTK"):
        to_hf(configs["ntk"])
    dyn = configs["dynamic"].replace(max_position_embeddings=8192)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        to_hf(dyn)
    # rotary_dim 6 of head_dim 10: 10 * 0.6 = 6.000000000000001 -> int 6 is fine; find one that is not
    bad = next(ropekit.RopeConfig(head_dim=h, rotary_dim=r) for h in range(2, 400) for r in range(2, h, 2)
               if int(h * (r / h)) != r)
    with pytest.raises(ValueError, match="int\\(head_dim"):
        to_hf(bad)
    with pytest.raises(TypeError, match="RopeConfig"):
        to_hf({"rope_theta": 1.0})


def test_from_hf_reads_hunyuan_alpha_as_static_ntk():
    cfg = from_hf({"head_dim": 128, "rope_theta": 10000.0, "max_position_embeddings": 32768,
                   "rope_scaling": {"type": "dynamic", "alpha": 1000.0}})
    assert cfg.scaling == ropekit.NTK(alpha=1000.0)


def test_longrope_without_factor_keeps_ropekit_attention(configs):
    sc = configs["longrope"].scaling
    cfg = configs["longrope"].replace(scaling=ropekit.LongRoPE(short_factor=sc.short_factor,
                                                               long_factor=sc.long_factor,
                                                               original_max_position_embeddings=4096))
    hf_cfg = _llama(to_hf(cfg))
    _, attn_hf = ROPE_INIT_FUNCTIONS["longrope"](hf_cfg, "cpu")
    assert attn_hf == cfg.attention_factor == 1.0  # HF alone would derive sqrt(1 + ln 32 / ln 4096)
