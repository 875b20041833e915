"""GGUF dialect: the real SmolLM2 GGUF, and GGUF files written here with gguf.GGUFWriter."""

from __future__ import annotations

import math

import pytest
import torch

import ropekit
from ropekit.core.reference import rotate_gathered
from ropekit.interop import from_gguf, from_hf, load_rope_config, permute_qk, to_gguf_metadata, write_gguf_rope
from ropekit.interop.gguf_write import to_gguf_tensors

gguf = pytest.importorskip("gguf")

# SmolLM2-135M's HF config.json (the RoPE-relevant part), written inline: no downloads
SMOLLM2_HF = {"model_type": "llama", "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
              "rope_theta": 100000, "max_position_embeddings": 8192, "rope_scaling": None}


def test_real_smollm2_gguf(smollm2_gguf):
    cfg = from_gguf(smollm2_gguf)
    assert cfg == ropekit.RopeConfig(head_dim=64, base=100000.0, layout="interleaved", max_position_embeddings=8192)
    # the GGUF's q/k weights are llama.cpp NORM (interleaved); the HF checkpoint's are half
    assert cfg.replace(layout="half") == from_hf(SMOLLM2_HF)
    assert load_rope_config(smollm2_gguf) == cfg


def test_real_weights_are_interleaved_permutation_of_hf(smollm2_gguf):
    """permute_qk(gguf -> half) equals transformers' own GGUF loader un-permutation, and rotating the GGUF
    weights' output with interleaved RoPE gives the same attention scores as HF-layout weights with half RoPE."""
    from gguf.quants import dequantize
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    reader = gguf.GGUFReader(smollm2_gguf)
    tensors = {t.name: t for t in reader.tensors if t.name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight")}
    proc = LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    cfg = from_gguf(smollm2_gguf)
    x = torch.randn(1, 7, 576, dtype=torch.float64)
    pos = torch.arange(100, 107)
    scores = []
    for layout, perm in (("interleaved", False), ("half", True)):
        qk = []
        for name, heads in (("blk.0.attn_q.weight", 9), ("blk.0.attn_k.weight", 3)):
            t = tensors[name]
            w = dequantize(t.data, t.tensor_type).reshape(heads * 64, 576)
            if perm:
                hf_w = proc._reverse_permute_weights(w, 9, 3 if heads == 3 else None)
                w_t = permute_qk(torch.from_numpy(w.copy()), heads, 64, src="interleaved", dst="half")
                assert torch.equal(w_t, torch.from_numpy(hf_w.copy()))
            else:
                w_t = torch.from_numpy(w.copy())
            y = (x @ w_t.double().T).reshape(1, 7, heads, 64)
            c = cfg.replace(layout=layout)
            qk.append(rotate_gathered(y, *c.cos_sin(pos), layout=layout))
        q, k = qk
        k = k.repeat_interleave(3, dim=2)
        scores.append(torch.einsum("bqhd,bkhd->bhqk", q, k))
    torch.testing.assert_close(scores[0], scores[1], rtol=1e-5, atol=1e-4)


def _write(path, arch: str, cfg: ropekit.RopeConfig, n_head: int = 4) -> str:
    w = gguf.GGUFWriter(str(path), arch)
    w.add_embedding_length(cfg.head_dim * n_head)
    w.add_head_count(n_head)
    write_gguf_rope(w, cfg)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


ROUND_TRIP = [("default", "llama"), ("partial", "phi3"), ("linear", "llama"), ("yarn", "qwen2"),
              ("yarn_attn", "qwen2"), ("yarn_deepseek", "deepseek2"), ("longrope", "phi3"), ("llama3", "llama")]


@pytest.mark.parametrize(("name", "arch"), ROUND_TRIP)
def test_written_gguf_round_trip(tmp_path, configs, name, arch):
    from ropekit.interop.gguf import GGUF_ARCH_LAYOUT

    cfg = configs[name].replace(layout=GGUF_ARCH_LAYOUT[arch])
    back = from_gguf(_write(tmp_path / f"{name}.gguf", arch, cfg))
    assert back == cfg
    for seq_len in (None, 100_000):
        torch.testing.assert_close(back.inv_freq(seq_len), cfg.inv_freq(seq_len), rtol=1e-12, atol=0)
    assert math.isclose(back.attention_factor, cfg.attention_factor, rel_tol=1e-7)


def test_llama3_rope_freqs_match_hf_divisors(configs):
    """llama.cpp divides theta by rope_freqs: the divisors must reproduce HF's llama3 frequencies."""
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from ropekit.interop import to_hf

    cfg = configs["llama3"]
    hf = LlamaConfig(hidden_size=256, num_attention_heads=4, **to_hf(cfg))
    inv_hf, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    div = to_gguf_tensors(cfg)["rope_freqs"]
    theta = 500000.0 ** (-torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    torch.testing.assert_close((theta / div.double()).float(), inv_hf, rtol=1e-6, atol=0)


def test_arbitrary_rope_freqs_fall_back_exactly(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "llama")
    w.add_embedding_length(64)
    w.add_head_count(2)
    w.add_rope_freq_base(10000.0)
    div = torch.linspace(1, 3, 16).flip(0)  # not llama3-shaped (decreasing)
    w.add_tensor("rope_freqs.weight", div.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    cfg = from_gguf(tmp_path / "x.gguf")
    theta = 10000.0 ** (-torch.arange(0, 32, 2, dtype=torch.float64) / 32)
    torch.testing.assert_close(cfg.inv_freq(), theta / div.double(), rtol=1e-12, atol=0)
    assert cfg.attention_factor == 1.0


def test_layout_override_and_unknown_arch(tmp_path, configs):
    cfg = configs["default"]
    path = _write(tmp_path / "m.gguf", "mystery-arch", cfg)
    with pytest.raises(ValueError, match="layout="):
        from_gguf(path)
    assert from_gguf(path, layout="half") == cfg
    with pytest.raises(ValueError, match="Did you mean 'qwen2'"):
        from_gguf(_write(tmp_path / "q.gguf", "qwen22", cfg))


def test_unexpressible_configs_raise(configs):
    # static NTK is no longer refused: it is written as its folded freq_base (tests/interop/test_dialect_matrix.py)
    for name, match in (("dynamic", "cannot express"), ("proportional", "cannot express"),
                        ("yarn_notrunc", "truncate")):
        with pytest.raises(ValueError, match=match):
            to_gguf_metadata(configs[name], "qwen2")
    with pytest.raises(ValueError, match="permute_qk"):
        to_gguf_metadata(configs["default"], "llama")  # half layout, but llama.cpp runs llama in NORM mode
    with pytest.raises(FileNotFoundError):
        from_gguf("/nonexistent/model.gguf")


def test_yarn_metadata_uses_converter_conventions(configs):
    md = to_gguf_metadata(configs["yarn_attn"], "qwen2")
    assert md["qwen2.rope.scaling.yarn_attn_factor"] == 1.25  # the full factor, as convert_hf_to_gguf writes it
    md = to_gguf_metadata(configs["yarn"], "qwen2")
    assert "qwen2.rope.scaling.yarn_attn_factor" not in md  # default g(s): llama.cpp applies it implicitly
    md = to_gguf_metadata(configs["yarn_deepseek"].replace(layout="interleaved"), "deepseek2")
    assert md["deepseek2.rope.scaling.yarn_log_multiplier"] == pytest.approx(0.1)
