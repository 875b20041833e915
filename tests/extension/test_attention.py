"""The chunked path equals the O(n^2) oracle for every method, both layouts, partial rotary, GQA, decode.

Tolerances come from the float32 epsilon: the oracle runs in float64, the chunked path in float32.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import ropekit
from ropekit.extension import (
    DualChunk,
    DynamicYaRN,
    LeakyReRoPE,
    ReRoPE,
    SelfExtend,
    extended_attention,
    place,
    reference_attention,
)

EPS = torch.finfo(torch.float32).eps
METHODS = [
    SelfExtend(group_size=3, window=7),
    SelfExtend(group_size=4, window=16),
    DualChunk(chunk_size=12, local_size=4),
    DualChunk(chunk_size=20, local_size=3),
    ReRoPE(window=9),
    LeakyReRoPE(window=6, slope=4.0),
    DynamicYaRN(original_max_position_embeddings=16),
]
# one forward call is one llama.cpp batch: checked per batch of a schedule, not against a one-shot forward
LLAMA_CPP = [SelfExtend(group_size=3, window=9, compat="llama.cpp"),
             SelfExtend(group_size=4, window=8, compat="llama.cpp")]
ROPES = [
    ropekit.RopeConfig(head_dim=16),
    ropekit.RopeConfig(head_dim=16, layout="interleaved"),
    ropekit.RopeConfig(head_dim=16, rotary_dim=8),  # partial rotary (phi / neox style)
    ropekit.RopeConfig(head_dim=16, base=500.0, scaling=ropekit.YaRN(factor=2.0, original_max_position_embeddings=16)),
]


def _qkv(n: int, hq: int = 4, hk: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, hq, n, 16, generator=g), torch.randn(2, hk, n, 16, generator=g),
            torch.randn(2, hk, n, 16, generator=g))


def _tol(ref: torch.Tensor) -> float:
    return 256 * EPS * max(1.0, float(ref.abs().max()))


GRID = [(m, r) for m, r in itertools.product(METHODS, ROPES)
        if not (isinstance(m, DynamicYaRN) and r.scaling is not None)]  # it refuses a scaled RoPE (tested)


@pytest.mark.parametrize(("method", "rope"), GRID,
                         ids=lambda x: getattr(x, "method", None) or f"{x.layout}-{x.rotary_dim}-{x.method}")
@pytest.mark.parametrize("rotated", [False, True])
def test_chunked_equals_reference(method, rope, rotated):
    n = 53  # not a multiple of any chunk or window
    q, k, v = _qkv(n, hq=4, hk=1 if rotated else 2)
    ref = reference_attention(q, k, v, method, rope)
    pos = torch.arange(n, dtype=torch.float64)
    qi, ki = (place(q, rope, pos), place(k, rope, pos)) if rotated else (q, k)
    for chunk in (5, 16, None):
        got = extended_attention(qi, ki, v, method, rope, rotated=rotated, chunk=chunk)
        assert (got.double() - ref).abs().max() <= _tol(ref), chunk
    # decode: the last 1 and 3 queries against the whole cache equal the full forward's rows
    for m in (1, 3):
        got = extended_attention(qi[:, :, -m:], ki, v, method, rope, rotated=rotated)
        assert (got.double() - ref[:, :, -m:]).abs().max() <= _tol(ref)


@pytest.mark.parametrize("method", LLAMA_CPP, ids=lambda m: f"g{m.group_size}-w{m.window}")
@pytest.mark.parametrize("rope", ROPES, ids=lambda r: f"{r.layout}-{r.rotary_dim}-{r.method}")
@pytest.mark.parametrize("rotated", [False, True])
def test_llama_cpp_mode_equals_reference_batch_by_batch(method, rope, rotated):
    n = 53
    q, k, v = _qkv(n, hq=4, hk=1 if rotated else 2)
    pos = torch.arange(n, dtype=torch.float64)
    qi, ki = (place(q, rope, pos), place(k, rope, pos)) if rotated else (q, k)
    for batch in (1, 7, 20):
        for s in range(0, n, batch):
            e = min(n, s + batch)
            kw = dict(q_pos=torch.arange(s, e), k_pos=torch.arange(e))
            ref = reference_attention(q[:, :, s:e], k[:, :, :e], v[:, :, :e], method, rope, **kw)
            got = extended_attention(qi[:, :, s:e], ki[:, :, :e], v[:, :, :e], method, rope, rotated=rotated,
                                     chunk=4, **kw)
            assert (got.double() - ref).abs().max() <= _tol(ref), (batch, s)


@pytest.mark.parametrize("method", METHODS + LLAMA_CPP, ids=lambda m: f"{m.method}-{getattr(m, 'compat', '')}")
def test_offsets_window_and_softcap(method):
    rope = ROPES[0]
    q, k, v = _qkv(30)
    k_pos = torch.arange(40, 70)  # a sliding-window cache: keys 40..69, the newest 10 are the queries
    kw = dict(q_pos=k_pos[-10:], k_pos=k_pos, softcap=5.0, sliding_window=17, scale=0.3)
    ref = reference_attention(q[:, :, -10:], k, v, method, rope, **kw)
    got = extended_attention(q[:, :, -10:], k, v, method, rope, chunk=4, **kw)
    assert (got.double() - ref).abs().max() <= _tol(ref)


def test_bf16_inputs_run_in_float32_and_round_once():
    rope, method = ROPES[0], SelfExtend(group_size=2, window=5)
    q, k, v = (t.bfloat16() for t in _qkv(24))
    got = extended_attention(q, k, v, method, rope)
    ref = reference_attention(q, k, v, method, rope)
    assert got.dtype == torch.bfloat16
    assert (got.double() - ref).abs().max() <= 2 * torch.finfo(torch.bfloat16).eps * max(1.0, float(ref.abs().max()))


@pytest.mark.parametrize("method", [SelfExtend(group_size=1, window=3), ReRoPE(window=64),
                                    DynamicYaRN(original_max_position_embeddings=64)], ids=lambda m: m.method)
@pytest.mark.parametrize("rope", ROPES[:3], ids=lambda r: f"{r.layout}-{r.rotary_dim}")
def test_identity_settings_equal_plain_rope_attention(method, rope):
    q, k, v = _qkv(40)
    pos = torch.arange(40, dtype=torch.float64)
    qr, kr = place(q, rope, pos), place(k, rope, pos)
    plain = torch.nn.functional.scaled_dot_product_attention(qr, kr, v, is_causal=True, enable_gqa=True)
    got = extended_attention(qr, kr, v, method, rope, rotated=True)
    assert (got - plain).abs().max() <= _tol(plain)


def test_methods_change_the_attention():
    # the oracle is not blind: every non-identity setting moves the output of a long enough sequence
    rope = ROPES[0]
    q, k, v = _qkv(60)
    plain = reference_attention(q, k, v, ReRoPE(window=1000), rope)
    for m in METHODS:
        assert (reference_attention(q, k, v, m, rope) - plain).abs().max() > 1e-3, m


@pytest.mark.parametrize(("kw", "match"), [
    (dict(q_pos=torch.arange(3.0)), "q_pos"),
    (dict(k_pos=torch.arange(5)), "k_pos"),
    (dict(chunk=0), "chunk"),
    (dict(mask=torch.ones(8, 8, dtype=torch.bool)), "mask"),
])
def test_bad_arguments_raise(kw, match):
    q, k, v = _qkv(8)
    with pytest.raises((ValueError, TypeError), match=match):
        extended_attention(q[:, :, -3:] if "q_pos" in kw else q, k, v, ReRoPE(window=2), ROPES[0], **kw)
    with pytest.raises(TypeError, match="method"):
        extended_attention(q, k, v, ropekit.YaRN(factor=2.0, original_max_position_embeddings=8), ROPES[0])


def test_memory_is_linear_in_length():
    # 16k x 16k fp32 scores would be 1 GiB; the chunked path must stay far below (subprocess: clean peak RSS)
    code = textwrap.dedent("""
        import resource, torch, ropekit
        from ropekit.extension import SelfExtend, extended_attention
        n = 16384
        q, k, v = torch.randn(1, 1, n, 16), torch.randn(1, 1, n, 16), torch.randn(1, 1, n, 16)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        extended_attention(q, k, v, SelfExtend(group_size=4, window=512), ropekit.RopeConfig(head_dim=16))
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    grew_mb = float(out.stdout.strip().splitlines()[-1])
    # a 16 MB score block (SCORE_ELEMENTS) plus its masks and the placed q/k copies, not n^2
    assert grew_mb < 160, f"peak RSS grew by {grew_mb:.0f} MB (n^2 fp32 would be 1024 MB)"
