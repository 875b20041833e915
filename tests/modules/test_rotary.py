"""RotaryEmbedding: lazy table growth, decode consistency, length-dependent methods."""

from __future__ import annotations

import torch

import ropekit
from ropekit import RopeConfig, RotaryEmbedding
from ropekit.core.reference import rotate_qk_ref


def test_matches_reference_and_grows_lazily() -> None:
    cfg = RopeConfig(head_dim=32, base=10000.0, rotary_dim=16)
    rope = RotaryEmbedding(cfg, backend="reference")
    q, k = torch.randn(2, 300, 4, 32), torch.randn(2, 300, 2, 32)
    oq, ok = rope(q, k)
    assert rope.cos_table.shape[0] == 512  # grown to the next power of two
    ct, st = cfg.cos_sin_table(300)
    rq, rk = rotate_qk_ref(q, k, ct, st)
    torch.testing.assert_close(oq, rq, rtol=0, atol=0)
    torch.testing.assert_close(ok, rk, rtol=0, atol=0)
    rope(q[:, :1], k[:, :1], offset=5000)
    assert rope.cos_table.shape[0] == 8192


def test_decode_step_equals_prefill_row() -> None:
    rope = RotaryEmbedding(RopeConfig(head_dim=16, layout="interleaved"), backend="reference")
    q = torch.randn(1, 10, 2, 16)
    full, _ = rope(q)
    step, _ = rope(q[:, 9:], offset=9)
    torch.testing.assert_close(step, full[:, 9:], rtol=0, atol=0)


def test_dynamic_ntk_follows_current_length() -> None:
    cfg = RopeConfig(head_dim=16, scaling=ropekit.DynamicNTK(factor=2.0, original_max_position_embeddings=64))
    rope = RotaryEmbedding(cfg, backend="reference")
    q = torch.randn(1, 100, 1, 16)
    out, _ = rope(q)
    ct, st = ropekit.core.cos_sin_table(cfg.inv_freq(seq_len=100), 100)
    torch.testing.assert_close(out, rotate_qk_ref(q, None, ct, st)[0], rtol=0, atol=0)
    short, _ = rope(q[:, :10])  # back under the context: the original frequencies
    ct0, st0 = RopeConfig(head_dim=16).cos_sin_table(10)
    torch.testing.assert_close(short, rotate_qk_ref(q[:, :10], None, ct0, st0)[0], rtol=0, atol=0)


def test_longrope_switches_at_original_context() -> None:
    lr = ropekit.LongRoPE(short_factor=[1.0] * 4, long_factor=[4.0] * 4, original_max_position_embeddings=8,
                          factor=4.0)
    rope = RotaryEmbedding(RopeConfig(head_dim=8, scaling=lr), backend="reference")
    pos8, pos9 = torch.arange(8), torch.arange(9)
    c8, _ = rope.cos_sin(pos8)
    c9, _ = rope.cos_sin(pos9)
    af = rope.config.attention_factor
    torch.testing.assert_close(c8[1], torch.cos(RopeConfig(head_dim=8).inv_freq()).float() * af)
    torch.testing.assert_close(c9[1], torch.cos(RopeConfig(head_dim=8).inv_freq() / 4).float() * af)


def test_model_to_bf16_never_leaves_a_bf16_table() -> None:
    """`model.to(torch.bfloat16)` casts float buffers (the classic low-precision-angle bug): the
    module must rebuild its float32 table instead of rotating with a bf16 one."""
    rope = RotaryEmbedding(RopeConfig(head_dim=8), backend="reference")
    q = torch.randn(1, 3000, 1, 8)
    ref, _ = rope(q)
    rope.to(torch.bfloat16)
    assert rope.cos_table.dtype == torch.bfloat16
    out, _ = rope(q)
    assert rope.cos_table.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
