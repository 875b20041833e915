from __future__ import annotations

import math

import pytest
import torch

import ropekit
from ropekit.study.encodings import ALiBi, Learned, Rotary, Sinusoidal, alibi_slopes, make_encoding, sinusoidal_table


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32])
def test_alibi_slopes_power_of_two_match_paper(n: int) -> None:
    # Press et al.: geometric sequence starting at 2^(-8/n) with ratio 2^(-8/n)
    want = [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]
    assert alibi_slopes(n).tolist() == pytest.approx(want, rel=1e-15)


def test_alibi_slopes_eight_heads_are_halves() -> None:
    assert alibi_slopes(8).tolist() == [1 / 2**k for k in range(1, 9)]


def test_alibi_slopes_non_power_of_two_follow_authors_code() -> None:
    # 6 heads: the 4-head slopes, then every other slope of the 8-head sequence (first 2)
    assert alibi_slopes(6).tolist() == [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]


def test_alibi_bias_is_linear_in_distance_and_causal() -> None:
    bias = ALiBi(4).attention_bias(5, torch.device("cpu"), torch.float32)
    assert bias.shape == (1, 4, 5, 5)
    m = alibi_slopes(4)
    for h in range(4):
        for i in range(5):
            for j in range(5):
                v = bias[0, h, i, j].item()
                if j > i:
                    assert v == float("-inf")
                else:
                    assert v == pytest.approx(-m[h].item() * (i - j), rel=1e-6)


def test_sinusoidal_matches_vaswani_formula() -> None:
    d, n = 16, 50
    t = sinusoidal_table(n, d)
    for p in (0, 1, 7, 49):
        for i in range(d // 2):
            ang = p / 10000 ** (2 * i / d)
            assert t[p, 2 * i].item() == pytest.approx(math.sin(ang), abs=1e-7)
            assert t[p, 2 * i + 1].item() == pytest.approx(math.cos(ang), abs=1e-7)
    with pytest.raises(ValueError, match="d_model must be even"):
        sinusoidal_table(4, 5)


def test_sinusoidal_module_adds_table() -> None:
    x = torch.zeros(2, 7, 8)
    assert torch.equal(Sinusoidal(8).add_to_embeddings(x)[1], sinusoidal_table(7, 8))


def test_learned_rejects_positions_beyond_table() -> None:
    enc = Learned(8, 16)
    with pytest.raises(ValueError, match="max_len=16"):
        enc.add_to_embeddings(torch.zeros(1, 17, 8))


def _scores(enc: Rotary, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    q2, k2 = enc.rotate(q, k)
    return torch.einsum("bihd,bjhd->bhij", q2.double(), k2.double())


def test_rotary_matches_ropekit_rotary_embedding() -> None:
    enc = Rotary(16, 32, base=500.0)
    rope = ropekit.RotaryEmbedding(ropekit.RopeConfig(head_dim=16, base=500.0, max_position_embeddings=32),
                                   backend="reference")
    q, k = torch.randn(2, 9, 4, 16), torch.randn(2, 9, 2, 16)
    a, b = enc.rotate(q, k)
    c, d = rope(q, k)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(b, d)


def test_rotary_scores_depend_on_relative_position_only() -> None:
    enc = Rotary(8, 32)
    q1, k1 = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    # the same (q, k) pair placed at distance 3, starting at two different absolute positions
    def at(i: int, j: int) -> float:
        q = torch.zeros(1, 20, 1, 8)
        k = torch.zeros(1, 20, 1, 8)
        q[:, i], k[:, j] = q1[:, 0], k1[:, 0]
        return _scores(enc, q, k)[0, 0, i, j].item()

    assert at(5, 2) == pytest.approx(at(17, 14), abs=1e-5)


def test_p_rope_keeps_highest_frequencies_and_leaves_other_channels() -> None:
    full, part = Rotary(16, 32, fraction=1.0), Rotary(16, 32, fraction=0.5)
    assert part.n_keep == 4
    cf, _ = full.tables(10, torch.device("cpu"))
    cp, _ = part.tables(10, torch.device("cpu"))
    torch.testing.assert_close(cp, cf[:, :4])  # the first (highest) frequencies
    q, k = torch.randn(1, 10, 2, 16), torch.randn(1, 10, 2, 16)
    q2, k2 = part.rotate(q, k)
    assert torch.equal(q2[..., 8:], q[..., 8:]) and torch.equal(k2[..., 8:], k[..., 8:])
    assert not torch.allclose(q2[..., :8], q[..., :8])
    with pytest.raises(ValueError, match="fraction"):
        Rotary(16, 32, fraction=0.0)


def test_eval_scaling_linear_interpolates_positions() -> None:
    enc = Rotary(8, 16)
    c1, s1 = enc.tables(64, torch.device("cpu"))
    enc.set_scaling("linear", 4.0)
    c4, s4 = enc.tables(64, torch.device("cpu"))
    torch.testing.assert_close(c4[::4], c1[:16])  # position 4p under PI x4 == position p unscaled
    torch.testing.assert_close(s4[::4], s1[:16])
    enc.set_scaling("none")
    torch.testing.assert_close(enc.tables(64, torch.device("cpu"))[0], c1)


def test_eval_scaling_uses_ropekit_configs() -> None:
    enc = Rotary(16, 32)
    for method in ("ntk", "dynamic", "yarn", "linear"):
        enc.set_scaling(method, 2.0)
        want = ropekit.RopeConfig(head_dim=16, max_position_embeddings=32).replace(
            scaling=ropekit.scaling_from_factor(method, 2.0, original_max_position_embeddings=32))
        cos, sin = want.cos_sin_table(100, seq_len=100)
        got_c, got_s = enc.tables(100, torch.device("cpu"))
        torch.testing.assert_close(got_c, cos)
        torch.testing.assert_close(got_s, sin)
    enc.set_scaling("yarn", 4.0)
    assert enc.config.attention_factor == pytest.approx(0.1 * math.log(4.0) + 1.0)
    cos, _ = enc.tables(3, torch.device("cpu"))
    assert cos[0, 0].item() == pytest.approx(0.1 * math.log(4.0) + 1.0, rel=1e-6)  # cos(0) * mscale


def test_bad_names_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="alibi"):
        make_encoding("alibbi", d_model=8, n_heads=2, head_dim=4, train_len=8, max_len=8)
    with pytest.raises(ValueError, match="yarn"):
        Rotary(8, 8).set_scaling("yarm", 2.0)


def test_rotary_takes_any_rope_config() -> None:
    cfg = ropekit.RopeConfig(head_dim=16, base=1000.0, layout="interleaved", partial_rotary_factor=0.5,
                             max_position_embeddings=32, scaling=ropekit.Linear(factor=2.0))
    enc = Rotary(16, 32, cfg=cfg)
    q, k = torch.randn(1, 7, 2, 16), torch.randn(1, 7, 2, 16)
    a, b = enc.rotate(q, k)
    c, d = ropekit.RotaryEmbedding(cfg, backend="reference")(q, k)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(b, d)
    with pytest.raises(ValueError, match="head_dim=8"):
        Rotary(8, 32, cfg=cfg)
