"""rerotate: one extra rotation == rotating the raw keys under the new config; KV cache across a switch."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit.core.reference import rotate_gathered
from ropekit.interop import RerotatingKVCache, rerotate
from ropekit.patching.verify import cache_kwargs

LONG = tuple(1.0 + i / 4 for i in range(8))
SHORT = tuple(1.0 + i / 32 for i in range(8))


def _pairs():
    base = ropekit.RopeConfig(head_dim=16, base=10000.0)
    yarn = base.replace(scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=64))
    return {
        "default->yarn (attention factor ratio)": (base, yarn),
        "yarn->linear": (yarn, base.replace(scaling=ropekit.Linear(factor=2.0))),
        "base change": (base, base.replace(base=500000.0)),
        "partial, same width": (base.replace(partial_rotary_factor=0.5),
                                base.replace(partial_rotary_factor=0.5, base=77.0)),
        "partial width changes": (base.replace(partial_rotary_factor=0.5), yarn),
        "layout changes": (base.replace(layout="interleaved"), yarn),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(_pairs()))
def test_equals_rotating_raw_keys_under_new(name, dtype):
    old, new = _pairs()[name]
    torch.manual_seed(0)
    k = torch.randn(2, 6, 3, 16, dtype=dtype)
    pos = torch.tensor([[0, 1, 2, 1000, 77_777, 999_999], [5, 6, 7, 8, 9, 10]])
    k_old = rotate_gathered(k, *old.cos_sin(pos), layout=old.layout)
    got = rerotate(k_old, pos, old=old, new=new)
    want = rotate_gathered(k, *new.cos_sin(pos), layout=new.layout)
    assert got.dtype == dtype
    # fp32 tables round cos/sin once (<= 6e-8); two roundings compose to a few 1e-7 per element
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6 * k.abs().max().item())


def test_positions_near_a_million_keep_float64_delta_precision():
    old = ropekit.RopeConfig(head_dim=64, base=10000.0)
    new = old.replace(base=10000.5)  # tiny frequency change: the delta must come from float64 frequencies
    k = torch.randn(1, 4, 1, 64, dtype=torch.float64)
    pos = torch.tensor([999_996, 999_997, 999_998, 999_999])
    got = rerotate(rotate_gathered(k, *old.cos_sin(pos)), pos, old=old, new=new)
    torch.testing.assert_close(got, rotate_gathered(k, *new.cos_sin(pos)), rtol=0, atol=1e-6 * k.abs().max().item())


def test_bad_arguments():
    a = ropekit.RopeConfig(head_dim=16)
    k = torch.randn(1, 3, 2, 16)
    with pytest.raises(ValueError, match="head_dim"):
        rerotate(k, torch.arange(3), old=a, new=a.replace(head_dim=32))
    with pytest.raises(TypeError, match="integer dtype"):
        rerotate(k, torch.arange(3.0), old=a, new=a)
    with pytest.raises(ValueError, match="positions must be"):
        rerotate(k, torch.arange(4), old=a, new=a)
    with pytest.raises(TypeError, match="RopeConfig"):
        rerotate(k, torch.arange(3), old=a, new={"base": 1.0})


class TinyAttention(torch.nn.Module):
    """One causal GQA attention layer + output head: enough to turn stale keys into wrong logits."""

    def __init__(self, cfg: ropekit.RopeConfig, d_model: int = 32, heads: int = 4, kv_heads: int = 2) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.cfg, self.h, self.kvh, self.hd = cfg, heads, kv_heads, cfg.head_dim
        self.wq = torch.randn(heads * self.hd, d_model, generator=g, dtype=torch.float64) / d_model**0.5
        self.wk = torch.randn(kv_heads * self.hd, d_model, generator=g, dtype=torch.float64) / d_model**0.5
        self.wv = torch.randn(kv_heads * self.hd, d_model, generator=g, dtype=torch.float64) / d_model**0.5
        self.wo = torch.randn(11, heads * self.hd, generator=g, dtype=torch.float64) / d_model**0.5

    def forward(self, x, start: int, seq_len: int, cache: RerotatingKVCache | None = None):
        b, t, _ = x.shape
        pos = torch.arange(start, start + t)
        cos, sin = self.cfg.cos_sin(pos, seq_len=seq_len)
        q = rotate_gathered((x @ self.wq.T).view(b, t, self.h, self.hd), cos, sin)
        k = rotate_gathered((x @ self.wk.T).view(b, t, self.kvh, self.hd), cos, sin)
        v = (x @ self.wv.T).view(b, t, self.kvh, self.hd)
        if cache is not None:
            k, v = cache.update(0, k, v)
        rep = self.h // self.kvh
        k, v = k.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2)
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) / self.hd**0.5
        mask = torch.arange(k.shape[1])[None, :] > (pos[:, None])
        out = torch.einsum("bhqk,bkhd->bqhd", s.masked_fill(mask, float("-inf")).softmax(-1), v)
        return out.reshape(b, t, -1) @ self.wo.T


@pytest.mark.parametrize("scaling", [
    ropekit.LongRoPE(short_factor=SHORT, long_factor=LONG, original_max_position_embeddings=12, factor=4.0),
    ropekit.DynamicNTK(factor=4.0, original_max_position_embeddings=12),
], ids=["longrope", "dynamic"])
def test_decode_across_the_switch_matches_full_recompute(scaling):
    cfg = ropekit.RopeConfig(head_dim=16, base=100.0, max_position_embeddings=48, scaling=scaling)
    model = TinyAttention(cfg)
    x = torch.randn(1, 24, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cache, stale = RerotatingKVCache(cfg), RerotatingKVCache(cfg)
    prefill = 8
    model(x[:, :prefill], 0, cache.prepare(prefill), cache)
    model(x[:, :prefill], 0, prefill, stale)
    worst_stale = 0.0
    for t in range(prefill, 24):
        got = model(x[:, t : t + 1], t, cache.prepare(t + 1), cache)[:, -1]
        full = model(x[:, : t + 1], 0, t + 1)[:, -1]  # HF semantics: frequencies for seq_len = t + 1 everywhere
        torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-6)
        naive = model(x[:, t : t + 1], t, t + 1, stale)[:, -1]  # cache that never re-rotates
        worst_stale = max(worst_stale, (naive - full).abs().max().item())
    assert cache.rerotations >= 1
    assert worst_stale > 1e-3  # the test can tell stale keys apart


@pytest.mark.parametrize("n_layers", [1, 2])
def test_tiny_hf_phi3_decode_across_longrope_switch(n_layers):
    """A tiny random HF Phi-3 (LongRoPE, L0 = 16). One layer: cached decoding past the switch with
    HFCacheRerotator gives the logits of a full recompute, HF's plain cache does not. Two layers: re-rotation
    cannot be exact, because layer 2's cached keys were computed from layer-1 attention that ran under the short
    factors; a full recompute changes those hidden states too. It still removes most of the error."""
    transformers = pytest.importorskip("transformers")
    from transformers import DynamicCache, Phi3Config, Phi3ForCausalLM

    from ropekit.interop import HFCacheRerotator

    hd = 16
    config = Phi3Config(vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=n_layers,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        original_max_position_embeddings=16, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                        rope_scaling={"type": "longrope", "short_factor": [1.0 + i / 16 for i in range(hd // 2)],
                                      "long_factor": [1.0 + i for i in range(hd // 2)]})
    transformers.set_seed(0)
    model = Phi3ForCausalLM(config).eval()
    cfg = ropekit.RopeConfig.from_hf(model.config)
    ids = torch.randint(3, 64, (1, 26), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = [model(ids[:, : t + 1]).logits[0, -1] for t in range(10, 26)]
        worst = {}
        for fix in (True, False):
            cache, hook = DynamicCache(config=config), HFCacheRerotator(cfg)
            model(ids[:, :10], **cache_kwargs(model, cache), use_cache=True)
            worst[fix] = 0.0
            for i, t in enumerate(range(10, 26)):
                if fix:
                    hook.prepare(cache, t + 1)
                step = model(ids[:, t : t + 1], **cache_kwargs(model, cache), use_cache=True).logits[0, -1]
                worst[fix] = max(worst[fix], (step - full[i]).abs().max().item())
            assert hook.rerotations == (1 if fix else 0)
    assert worst[False] > 1e-3  # HF's own cache is stale past the switch (transformers#33129)
    if n_layers == 1:
        assert worst[True] < 1e-5
    else:
        assert worst[True] < worst[False] / 4
