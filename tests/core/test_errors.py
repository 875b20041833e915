"""Bad input -> a clear ValueError/TypeError naming the argument. One test per kind of mistake."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit import RopeConfig
from ropekit.core.frequencies import compute_frequencies
from ropekit.core.reference import rotate_gathered, rotate_qk_ref

CFG = RopeConfig(head_dim=16)
COS, SIN = CFG.cos_sin_table(32)


def qk(hq=2, hk=1, d=16, s=4, dtype=torch.float32):
    return torch.randn(1, s, hq, d, dtype=dtype), torch.randn(1, s, hk, d, dtype=dtype)


def test_odd_rotary_dim() -> None:
    with pytest.raises(ValueError, match="rotary_dim must be even"):
        RopeConfig(head_dim=16, rotary_dim=7)
    with pytest.raises(ValueError, match="rotary_dim must be even"):
        RopeConfig(head_dim=10, partial_rotary_factor=0.5)  # int(10 * 0.5) = 5


def test_rotary_dim_larger_than_head_dim() -> None:
    with pytest.raises(ValueError, match=r"rotary_dim must be in \[2, head_dim=16\]"):
        RopeConfig(head_dim=16, rotary_dim=32)
    with pytest.raises(ValueError, match="rotary_dim"):
        rotate_gathered(torch.randn(1, 2, 1, 8), torch.ones(2, 8), torch.zeros(2, 8))


def test_partial_factor_out_of_range_or_inconsistent() -> None:
    with pytest.raises(ValueError, match="partial_rotary_factor must be in"):
        RopeConfig(head_dim=16, partial_rotary_factor=1.5)
    with pytest.raises(ValueError, match="disagree"):
        RopeConfig(head_dim=16, rotary_dim=8, partial_rotary_factor=0.25)


def test_qk_head_dim_mismatch() -> None:
    q, _ = qk()
    k = torch.randn(1, 4, 1, 8)
    with pytest.raises(ValueError, match="head_dim differ"):
        rotate_qk_ref(q, k, COS, SIN)


def test_module_head_dim_mismatch() -> None:
    with pytest.raises(ValueError, match="config.head_dim=16"):
        ropekit.RotaryEmbedding(CFG)(torch.randn(1, 4, 2, 32))


def test_non_floating_qk() -> None:
    q, k = qk()
    with pytest.raises(TypeError, match="k must be a floating tensor"):
        rotate_qk_ref(q, k.long(), COS, SIN)


@pytest.mark.parametrize("pos", [torch.arange(4.0), torch.arange(4).bfloat16()])
def test_float_positions(pos: torch.Tensor) -> None:
    q, k = qk()
    with pytest.raises(TypeError, match="positions must have an integer dtype"):
        rotate_qk_ref(q, k, COS, SIN, positions=pos)
    with pytest.raises(TypeError, match="integer dtype"):
        CFG.cos_sin(pos)


def test_negative_positions_and_offsets() -> None:
    q, k = qk()
    with pytest.raises(ValueError, match="positions must be >= 0"):
        rotate_qk_ref(q, k, COS, SIN, positions=torch.tensor([0, 1, -2, 3]))
    with pytest.raises(ValueError, match="offset must be >= 0"):
        rotate_qk_ref(q, k, COS, SIN, offset=-1)
    with pytest.raises(ValueError, match="offset must be >= 0"):
        ropekit.RotaryEmbedding(CFG)(q, k, offset=-1)


def test_positions_beyond_the_table() -> None:
    q, k = qk()
    with pytest.raises(ValueError, match=r"must be < 32 \(the cos/sin table has 32 rows\)"):
        rotate_qk_ref(q, k, COS, SIN, offset=30)


def test_positions_shape_mismatch() -> None:
    q, k = qk()
    with pytest.raises(ValueError, match=r"positions must have shape \(seqlen,\)"):
        rotate_qk_ref(q, k, COS, SIN, positions=torch.arange(5))
    with pytest.raises(ValueError, match="either positions or offset"):
        rotate_qk_ref(q, k, COS, SIN, positions=torch.arange(4), offset=2)


def test_cu_seqlens_mismatch() -> None:
    q = torch.randn(7, 2, 16)
    with pytest.raises(ValueError, match="does not match the packed token count"):
        rotate_qk_ref(q, None, COS, SIN, cu_seqlens=torch.tensor([0, 3, 6]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ropekit.Linear(factor=0),
        lambda: ropekit.Linear(factor=-2.0),
        lambda: ropekit.NTK(alpha=0.0),
        lambda: ropekit.DynamicNTK(factor=0, original_max_position_embeddings=4096),
        lambda: ropekit.YaRN(factor=-1.0, original_max_position_embeddings=4096),
        lambda: ropekit.Llama3(factor=0.0, original_max_position_embeddings=8192),
    ],
)
def test_factor_must_be_positive(make) -> None:
    with pytest.raises(ValueError, match="(factor|alpha) must be a finite number > 0"):
        make()


def test_low_freq_factor_must_be_below_high() -> None:
    with pytest.raises(ValueError, match="low_freq_factor must be < high_freq_factor"):
        ropekit.Llama3(factor=8.0, original_max_position_embeddings=8192, low_freq_factor=4.0, high_freq_factor=4.0)


def test_yarn_beta_order_and_context() -> None:
    with pytest.raises(ValueError, match="beta_fast must be > beta_slow"):
        ropekit.YaRN(factor=2.0, original_max_position_embeddings=4096, beta_fast=1, beta_slow=32)
    with pytest.raises(ValueError, match="original_max_position_embeddings must be an int >= 1"):
        ropekit.YaRN(factor=2.0, original_max_position_embeddings=0)


def test_longrope_factor_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        ropekit.LongRoPE(short_factor=[1.0] * 4, long_factor=[1.0] * 3, original_max_position_embeddings=16)
    lr = ropekit.LongRoPE(short_factor=[1.0] * 4, long_factor=[2.0] * 4, original_max_position_embeddings=16)
    with pytest.raises(ValueError, match="rotary_dim // 2 = 8 entries, got 4"):
        RopeConfig(head_dim=16, scaling=lr)
    with pytest.raises(ValueError, match="finite floats > 0"):
        ropekit.LongRoPE(short_factor=[1.0, 0.0], long_factor=[1.0, 1.0], original_max_position_embeddings=16)


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(ValueError, match="Did you mean 'yarn'"):
        compute_frequencies("yarm", None, rotary_dim=8, base=10000.0)
    with pytest.raises(ValueError, match="Did you mean 'interleaved'"):
        RopeConfig(head_dim=8, layout="interleave")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Did you mean 'dynamic'"):
        ropekit.scaling_from_factor("dynamik", 2.0, original_max_position_embeddings=8)
    with pytest.raises(ValueError, match="Did you mean 'reference'"):
        ropekit.apply_rotary(*qk(), COS, SIN, backend="referance")


def test_hf_unknown_rope_type() -> None:
    d = {"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 128,
         "rope_scaling": {"rope_type": "yarnn", "factor": 2.0}}
    with pytest.raises(ValueError, match="unknown HF rope_type 'yarnn'.*Did you mean 'yarn'"):
        RopeConfig.from_hf(d)


def test_hf_missing_required_key() -> None:
    d = {"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 128,
         "rope_scaling": {"rope_type": "llama3", "factor": 2.0}}
    with pytest.raises(ValueError, match="needs the key 'low_freq_factor'"):
        RopeConfig.from_hf(d)


def test_bad_base_and_scaling_type() -> None:
    with pytest.raises(ValueError, match="base must be > 1"):
        RopeConfig(head_dim=8, base=1.0)
    with pytest.raises(TypeError, match="base must be a real number"):
        RopeConfig(head_dim=8, base="10000")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scaling must be None or a ropekit scaling config"):
        RopeConfig(head_dim=8, scaling={"rope_type": "yarn"})  # type: ignore[arg-type]


def test_configs_are_frozen_and_keyword_only() -> None:
    with pytest.raises(AttributeError):
        CFG.base = 5.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        RopeConfig(16)  # type: ignore[misc]


def test_registry_functions_check_their_params() -> None:
    from ropekit.core.frequencies import ROPE_FREQUENCIES

    with pytest.raises(TypeError, match="method 'yarn' needs YaRN params, got Linear"):
        ROPE_FREQUENCIES["yarn"](ropekit.Linear(factor=2.0), 16, 10000.0, None)
    with pytest.raises(ValueError, match="does not match the scaling params"):
        compute_frequencies("linear", ropekit.NTK(alpha=2.0), rotary_dim=16, base=10000.0)
    with pytest.raises(ValueError, match="seq_len must be None or an int >= 1"):
        compute_frequencies("default", None, rotary_dim=16, base=10000.0, seq_len=0)
