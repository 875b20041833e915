"""Extension configs: validation errors name the argument, position maps obey their definitions."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit.extension import (
    EXTENSIONS,
    DualChunk,
    DynamicYaRN,
    LeakyReRoPE,
    ReRoPE,
    SelfExtend,
    extension_from_name,
)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: SelfExtend(group_size=0, window=8), "group_size"),
    (lambda: SelfExtend(group_size=2.0, window=8), "group_size"),
    (lambda: SelfExtend(group_size=2, window=0), "window"),
    (lambda: SelfExtend(group_size=2, window=8, compat="vllm"), "compat"),
    (lambda: SelfExtend(group_size=3, window=8, compat="llama.cpp"), "multiple of group_size"),
    (lambda: DualChunk(chunk_size=8, local_size=8), "local_size"),
    (lambda: DualChunk(chunk_size=1, local_size=1), "chunk_size"),
    (lambda: ReRoPE(window=0), "window"),
    (lambda: LeakyReRoPE(window=8, slope=0.5), "slope"),
    (lambda: LeakyReRoPE(window=8, slope=float("nan")), "slope"),
    (lambda: DynamicYaRN(original_max_position_embeddings=0), "original_max_position_embeddings"),
    (lambda: DynamicYaRN(original_max_position_embeddings=64, beta_fast=1.0, beta_slow=2.0), "beta_fast"),
    (lambda: extension_from_name("self_extend", group_size=2, window=8), "self-extend"),
])
def test_bad_parameters_raise(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize(("method", "match"), [
    (SelfExtend(group_size=4, window=2048), "window"),
    (ReRoPE(window=4096), "window"),
    (DualChunk(chunk_size=4096, local_size=64), "chunk_size"),
])
def test_parameters_must_fit_the_trained_context(method, match):
    with pytest.raises(ValueError, match=match):
        method.check_context(2048)
    method.check_context(1 << 20)
    method.check_context(None)


def test_configs_are_frozen_keyword_only():
    with pytest.raises(TypeError):
        SelfExtend(4, 8)  # type: ignore[misc]
    se = SelfExtend(group_size=4, window=8)
    with pytest.raises(AttributeError):
        se.window = 3  # type: ignore[misc]
    assert set(EXTENSIONS) == {"self-extend", "dca", "rerope", "leaky-rerope", "dynamic-yarn"}
    assert ropekit.SelfExtend is SelfExtend and ropekit.DualChunk is DualChunk


def _pairs(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    return i, j, j <= i


def test_identity_settings_keep_exact_distances():
    i, j, causal = _pairs(200)
    d = (i - j).double()
    for m in (SelfExtend(group_size=1, window=5), ReRoPE(window=200), LeakyReRoPE(window=20, slope=1.0),
              DynamicYaRN(original_max_position_embeddings=64)):
        assert torch.equal(m.relative(i, j)[causal], d[causal]), m


def test_self_extend_is_continuous_at_the_window_and_bounded():
    i, j, causal = _pairs(300)
    se = SelfExtend(group_size=4, window=16)
    r = se.relative(i, j)
    d = i - j
    assert torch.equal(r[causal & (d < 16)], d[causal & (d < 16)].double())
    # the grouped distance never runs backwards and never jumps by more than one group step
    assert float(r[causal].max()) <= 299 // 4 + 16 - 16 // 4
    assert float((r[causal & (d >= 16)] - 16).min()) >= -1


def test_dca_distances_never_exceed_the_chunk_and_are_exact_locally():
    i, j, causal = _pairs(400)
    dca = DualChunk(chunk_size=48, local_size=12)
    r, d = dca.relative(i, j), (i - j).double()
    assert float(r[causal].max()) <= 48 and float(r[causal].min()) >= 0
    same = causal & (i // 36 == j // 36)
    assert torch.equal(r[same], d[same])
    # a query sees the previous chunk's keys at their exact distance while that stays within local_size
    near = causal & (i // 36 - j // 36 == 1) & (i % 36 < 12)
    assert torch.equal(r[near], d[near])


def test_leaky_rerope_grows_with_slope_beyond_the_window():
    i, j, causal = _pairs(100)
    m = LeakyReRoPE(window=10, slope=4.0)
    r, d = m.relative(i, j), (i - j).double()
    far = causal & (d >= 10)
    assert torch.allclose(r[far], 10 + (d[far] - 10) / 4)
    assert float(ReRoPE(window=10).relative(i, j)[causal].max()) == 10


def test_dynamic_yarn_factor_follows_the_length():
    m = DynamicYaRN(original_max_position_embeddings=64)
    rope = ropekit.RopeConfig(head_dim=16)
    assert m.rope_at(rope, 64) is rope
    got = m.rope_at(rope, 160)
    assert got.scaling == ropekit.YaRN(factor=2.5, original_max_position_embeddings=64)
    with pytest.raises(ValueError, match="already scales"):
        m.rope_at(rope.replace(scaling=ropekit.Linear(factor=2.0)), 160)


@pytest.mark.parametrize("g,w,ctx", [(3, 64, 128), (4, 1024, 8192), (5, 7, 50), (1, 16, 64)])
def test_self_extend_capacity_is_tight(g, w, ctx):
    """capacity(ctx) is the longest n whose largest placed distance stays below ctx (window not a multiple of G too)."""
    import torch

    se = SelfExtend(group_size=g, window=w)
    n = se.capacity(ctx)
    last = torch.tensor([[n - 1]]), torch.tensor([[n]])
    assert float(se.relative(last[0], torch.tensor([[0]]))) < ctx <= float(se.relative(last[1], torch.tensor([[0]])))


def _llama_cli_distances(n: int, g: int, w: int, batch: int) -> torch.Tensor:
    """Relative distances llama-cli's --grp-attn loop gives, by replaying its cache bookkeeping on integers.

    Written from llama-cli's loop (examples/main): before each batch, while ``n_past >= ga_i + w``, shift the
    tail up by ``ib * bd``, floor-divide the next ``w`` positions by ``g``, shift what follows down by ``dd``.
    Each query's distances are read from the cache positions as they are when its batch is evaluated.
    """
    pos: list[int] = []  # cache position of each evaluated token
    out = torch.full((n, n), float("nan"), dtype=torch.float64)
    n_past = ga_i = 0

    def move(lo: int, hi: int, f) -> None:
        pos[:] = [f(p) if lo <= p < hi else p for p in pos]

    for start in range(0, n, batch):
        while n_past >= ga_i + w:
            ib, bd = (g * ga_i) // w, (w // g) * (g - 1)
            dd = w // g - ib * bd - w
            move(ga_i, n_past, lambda p: p + ib * bd)
            move(ga_i + ib * bd, ga_i + ib * bd + w, lambda p: p // g)
            move(ga_i + ib * bd + w, n_past + ib * bd, lambda p: p + dd)
            n_past -= bd
            ga_i += w // g
        m = min(batch, n - start)
        pos += [n_past + t for t in range(m)]
        for i in range(start, start + m):
            out[i, : i + 1] = torch.tensor([pos[i] - pos[j] for j in range(i + 1)], dtype=torch.float64)
        n_past += m
    return out


@pytest.mark.parametrize(("g", "w", "batch", "n"), [
    (4, 8, 1, 70), (4, 8, 5, 70), (2, 6, 16, 80), (3, 9, 4, 61), (1, 4, 3, 20), (4, 8, 8, 64), (8, 16, 40, 90),
])
def test_llama_cpp_mode_replays_llama_cli(g, w, batch, n):
    """compat="llama.cpp" gives, per batch (one forward call), the distances llama-cli's cache shifts give."""
    se = SelfExtend(group_size=g, window=w, compat="llama.cpp")
    want = _llama_cli_distances(n, g, w, batch)
    for start in range(0, n, batch):
        i, j = torch.arange(start, min(n, start + batch))[:, None], torch.arange(n)[None, :]
        causal = (j <= i).expand(i.shape[0], n)
        assert torch.equal(se.relative(i, j)[causal], want[start:start + batch][causal]), start


def test_llama_cpp_mode_groups_nothing_in_the_first_batch_and_differs_from_the_paper():
    i, j, causal = _pairs(200)
    cpp, paper = (SelfExtend(group_size=4, window=16, compat=c) for c in ("llama.cpp", "paper"))
    assert torch.equal(cpp.relative(i, j)[causal], (i - j).double()[causal])  # one call from 0: plain RoPE
    step = torch.tensor([[199]]), torch.arange(200)[None]  # a decode step: 12 blocks grouped
    assert not torch.equal(cpp.relative(*step), paper.relative(*step))
    assert float(cpp.relative(*step).max()) == 199 - 12 * 12  # query moved down by k (W - W / G), key 0 at 0
    with pytest.raises(ValueError, match="batch schedule"):
        cpp.capacity(8192)
