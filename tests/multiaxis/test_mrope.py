"""M-RoPE against transformers' Qwen2-VL (sectioned) and Qwen3-VL (interleaved) rotary modules."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit.multiaxis import apply_mrope, mrope_axis_of_pair, mrope_cos_sin

pytest.importorskip("transformers")


def _vision_positions(batch: int = 2) -> torch.Tensor:
    """(3, batch, seqlen): 3 text tokens, a 2 x 2 x 3 (t, h, w) video grid, then text resuming at max + 1."""
    t, h, w = torch.meshgrid(torch.arange(2), torch.arange(2), torch.arange(3), indexing="ij")
    grid = torch.stack((t, h, w)).reshape(3, -1) + 3
    text0 = torch.arange(3).expand(3, 3)
    text1 = torch.arange(4).expand(3, 4) + int(grid.max()) + 1
    pos = torch.cat((text0, grid, text1), dim=1)
    return torch.stack([pos, pos + 5][:batch], dim=1)


def _hf_module(kind: str, section: list[int], head_dim: int, theta: float):
    if kind == "qwen2":
        from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLTextConfig
        from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLRotaryEmbedding as Rope
        cfg_cls = Qwen2VLTextConfig
    else:
        from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLTextConfig
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding as Rope
        cfg_cls = Qwen3VLTextConfig
    cfg = cfg_cls(hidden_size=2 * head_dim, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=1,
                  intermediate_size=16, vocab_size=16, head_dim=head_dim, max_position_embeddings=128,
                  rope_parameters={"rope_type": "default", "mrope_section": section, "rope_theta": theta})
    return Rope(cfg)


@pytest.mark.parametrize(("kind", "section", "interleaved"), [
    ("qwen2", [8, 12, 12], False),
    ("qwen2", [16, 8, 8], False),
    ("qwen3", [12, 10, 10], True),
    ("qwen3", [16, 8, 8], True),
])
def test_matches_transformers(kind, section, interleaved):
    hd, theta = 64, 10000.0
    hf = _hf_module(kind, section, hd, theta)
    pos = _vision_positions()
    x = torch.randn(2, pos.shape[-1], hd)
    cos_hf, sin_hf = hf(x, pos)
    cfg = ropekit.RopeConfig(head_dim=hd, base=theta)
    cos, sin = mrope_cos_sin(cfg, pos, section, interleaved=interleaved)
    torch.testing.assert_close(cos, cos_hf[..., : hd // 2], rtol=0, atol=2e-6)
    torch.testing.assert_close(torch.cat((cos, cos), -1), cos_hf, rtol=0, atol=2e-6)
    torch.testing.assert_close(sin, sin_hf[..., : hd // 2], rtol=0, atol=2e-6)
    # the rotation itself vs HF's apply_rotary_pos_emb ((batch, heads, seq, dim) there)
    from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb

    q, k = torch.randn(2, pos.shape[-1], 2, hd), torch.randn(2, pos.shape[-1], 1, hd)
    q_hf, k_hf = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos_hf, sin_hf)
    q2, k2 = apply_mrope(q, k, cfg, pos, section, interleaved=interleaved)
    torch.testing.assert_close(q2, q_hf.transpose(1, 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k2, k_hf.transpose(1, 2), rtol=1e-5, atol=1e-5)


def test_sectioned_and_interleaved_differ_on_vision_but_not_text():
    cfg = ropekit.RopeConfig(head_dim=64)
    pos = _vision_positions()
    a = mrope_cos_sin(cfg, pos, [16, 8, 8])[0]
    b = mrope_cos_sin(cfg, pos, [16, 8, 8], interleaved=True)[0]
    assert not torch.equal(a, b)
    text = torch.arange(9).expand(1, 9)
    for inter in (False, True):
        c, s = mrope_cos_sin(cfg, text, [16, 8, 8], interleaved=inter)  # (batch, seqlen) broadcasts to 3 axes
        c1, s1 = cfg.cos_sin(torch.arange(9))
        assert torch.equal(c[0], c1) and torch.equal(s[0], s1)


def test_axis_assignment():
    assert mrope_axis_of_pair([1, 2, 3]).tolist() == [0, 1, 1, 2, 2, 2]
    assert mrope_axis_of_pair([24, 20, 20], interleaved=True)[:6].tolist() == [0, 1, 2, 0, 1, 2]
    assert mrope_axis_of_pair([24, 20, 20], interleaved=True)[60:].tolist() == [0, 0, 0, 0]


def test_scaling_and_attention_factor_carry_over():
    cfg = ropekit.RopeConfig(head_dim=32, scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=64))
    text = torch.arange(7).expand(1, 7)
    c, _ = mrope_cos_sin(cfg, text, [8, 4, 4])
    assert torch.equal(c[0], cfg.cos_sin(torch.arange(7))[0])


@pytest.mark.parametrize(("section", "interleaved", "match"), [
    ([8, 12, 11], False, "sum to rotary_dim // 2 = 32"),
    ([8, 12, 12, 0], True, "3 sections"),
    ([8, -1, 25], False, "non-negative"),
    ("abc", False, "sequence of ints"),
])
def test_bad_sections(section, interleaved, match):
    cfg = ropekit.RopeConfig(head_dim=64)
    with pytest.raises((ValueError, TypeError), match=match):
        mrope_cos_sin(cfg, _vision_positions(), section, interleaved=interleaved)


def test_bad_positions():
    cfg = ropekit.RopeConfig(head_dim=64)
    with pytest.raises(ValueError, match="\\(3, batch, seqlen\\)"):
        mrope_cos_sin(cfg, torch.zeros(2, 1, 4, dtype=torch.long), [16, 8, 8])
    with pytest.raises(TypeError, match="integer dtype"):
        mrope_cos_sin(cfg, torch.zeros(3, 1, 4), [16, 8, 8])
