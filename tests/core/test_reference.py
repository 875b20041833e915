"""The reference apply against the peers that define it: HF Llama (half) and GPT-J (interleaved)."""

from __future__ import annotations

import pytest
import torch

from ropekit import RopeConfig
from ropekit.core.reference import rotate_gathered, rotate_qk_ref

llama = pytest.importorskip("transformers.models.llama.modeling_llama")
gptj = pytest.importorskip("transformers.models.gptj.modeling_gptj")

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def tol(dtype: torch.dtype) -> dict:
    # one rounding to the output dtype (plus a little for the fp32 math): a couple of the dtype's ulps
    eps = torch.finfo(dtype).eps
    return {"rtol": 2 * eps, "atol": 4 * eps}


def hf_cos_sin(cfg: RopeConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-width cos/sin like HF's rotary module, but from ropekit's precise half-width table."""
    c, s = cfg.cos_sin(positions)
    return torch.cat((c, c), -1), torch.cat((s, s), -1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rotary_dim", [64, 32])
def test_half_layout_equals_hf_llama(dtype: torch.dtype, rotary_dim: int) -> None:
    g = torch.Generator().manual_seed(0)
    cfg = RopeConfig(head_dim=64, base=10000.0, rotary_dim=rotary_dim)
    b, s, hq, hk = 2, 17, 7, 3
    q = torch.randn(b, s, hq, 64, generator=g).to(dtype)
    k = torch.randn(b, s, hk, 64, generator=g).to(dtype)
    pos = torch.arange(5, 5 + s).expand(b, s)
    cos, sin = hf_cos_sin(cfg, pos)
    # HF: (batch, heads, seq, dim), rotary part only (partial models slice before the call)
    q_hf, k_hf = llama.apply_rotary_pos_emb(
        q[..., :rotary_dim].float().transpose(1, 2), k[..., :rotary_dim].float().transpose(1, 2), cos, sin
    )
    ref_q = torch.cat((q_hf.transpose(1, 2).to(dtype), q[..., rotary_dim:]), -1)
    ref_k = torch.cat((k_hf.transpose(1, 2).to(dtype), k[..., rotary_dim:]), -1)
    c, s_ = cfg.cos_sin_table(64)
    oq, ok = rotate_qk_ref(q, k, c, s_, offset=5)
    assert oq.dtype == dtype and ok.dtype == dtype
    torch.testing.assert_close(oq, ref_q, **tol(dtype))
    torch.testing.assert_close(ok, ref_k, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rotary_dim", [64, 16])
def test_interleaved_layout_equals_gptj(dtype: torch.dtype, rotary_dim: int) -> None:
    g = torch.Generator().manual_seed(1)
    cfg = RopeConfig(head_dim=64, layout="interleaved", rotary_dim=rotary_dim)
    x = torch.randn(2, 9, 4, 64, generator=g).to(dtype)
    pos = torch.arange(9).expand(2, 9)
    c, s = cfg.cos_sin(pos)
    rot = gptj.apply_rotary_pos_emb(x[..., :rotary_dim].float(), s, c)
    ref = torch.cat((rot.to(dtype), x[..., rotary_dim:]), -1)
    torch.testing.assert_close(rotate_gathered(x, c, s, layout="interleaved"), ref, **tol(dtype))


def test_gqa_positions_per_batch_and_offsets_agree() -> None:
    g = torch.Generator().manual_seed(2)
    cfg = RopeConfig(head_dim=32)
    ct, st = cfg.cos_sin_table(128)
    q, k = torch.randn(3, 6, 5, 32, generator=g), torch.randn(3, 6, 1, 32, generator=g)
    off = torch.tensor([0, 7, 50])
    a = rotate_qk_ref(q, k, ct, st, offset=off)
    b = rotate_qk_ref(q, k, ct, st, positions=off[:, None] + torch.arange(6))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    # row 1 equals an independent call at offset 7
    c = rotate_qk_ref(q[1:2], k[1:2], ct, st, offset=7)
    torch.testing.assert_close(a[0][1:2], c[0], rtol=0, atol=0)


def test_packed_sequences_equal_separate_calls() -> None:
    g = torch.Generator().manual_seed(3)
    cfg = RopeConfig(head_dim=16, layout="interleaved")
    ct, st = cfg.cos_sin_table(64)
    lens = [5, 1, 9]
    q = torch.randn(sum(lens), 3, 16, generator=g)
    cu = torch.tensor([0, 5, 6, 15])
    out, _ = rotate_qk_ref(q, None, ct, st, cu_seqlens=cu, layout="interleaved")
    start = 0
    for n in lens:
        sep, _ = rotate_qk_ref(q[None, start : start + n], None, ct, st, layout="interleaved")
        torch.testing.assert_close(out[start : start + n], sep[0], rtol=0, atol=0)
        start += n


def test_proportional_passes_unused_pairs_through_both_halves() -> None:
    from ropekit import Proportional

    cfg = RopeConfig(head_dim=16, scaling=Proportional(partial_rotary_factor=0.5))
    c, s = cfg.cos_sin(torch.arange(3, 4))
    x = torch.randn(1, 1, 1, 16)
    y = rotate_gathered(x, c, s)
    # pairs 4..7 (channels 4-7 and 12-15) have frequency 0: untouched
    torch.testing.assert_close(y[..., 4:8], x[..., 4:8], rtol=0, atol=0)
    torch.testing.assert_close(y[..., 12:16], x[..., 12:16], rtol=0, atol=0)
    assert not torch.allclose(y[..., :4], x[..., :4])


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_gradcheck_float64(layout: str) -> None:
    cfg = RopeConfig(head_dim=8, rotary_dim=6, layout=layout)
    c, s = cfg.cos_sin(torch.arange(4))
    c, s = c.double(), s.double()
    x = torch.randn(1, 4, 2, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: rotate_gathered(t, c, s, layout=layout), (x,))


def test_math_is_fp32_for_bf16_inputs() -> None:
    """bf16 in, bf16 out, but one rounding: equals the fp32 result rounded once."""
    cfg = RopeConfig(head_dim=64)
    c, s = cfg.cos_sin(torch.arange(1000, 1010))
    x = torch.randn(1, 10, 2, 64).bfloat16()
    y = rotate_gathered(x, c, s)
    ref = rotate_gathered(x.float(), c, s).bfloat16()
    assert torch.equal(y, ref)
