"""Fuzzing the dialect readers: junk in, only a ValueError/TypeError with a message out.

Hypothesis feeds from_hf (flat and per-layer-type dicts), from_vllm, from_llama_cpp_args and the GGUF metadata
reader with junk types, missing keys, negative/NaN/inf numbers and strings where numbers go. Malformed GGUF
files (truncated, wrong magic, absurd counts and lengths, random byte flips of a real file written with the
gguf package) must fail with a clear ValueError in under a second and without allocating much memory.
"""

from __future__ import annotations

import itertools
import struct
import time
import tracemalloc

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ropekit.interop import from_hf, from_llama_cpp_args, from_vllm
from ropekit.interop.gguf import from_gguf, from_gguf_metadata, gguf_metadata
from ropekit.interop.hf import HF_ROPE_TYPES
from ropekit.interop.llama_cpp import LLAMA_CPP_FLAGS
from ropekit.interop.vllm import VLLM_ROPE_TYPES

gguf = pytest.importorskip("gguf")

FUZZ = settings(max_examples=150, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, 2, 4096, 10**30, 2**64, -1, 0.5, 1e308, float("nan"), float("inf")]))
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
value = st.one_of(numbers, junk)
factor_lists = st.one_of(st.lists(numbers, max_size=40), junk)

ROPE_KEYS = {"factor": value, "original_max_position_embeddings": value, "beta_fast": value, "beta_slow": value,
             "mscale": value, "mscale_all_dim": value, "attention_factor": value, "truncate": value,
             "low_freq_factor": value, "high_freq_factor": value, "alpha": value, "rope_theta": value,
             "partial_rotary_factor": value, "short_factor": factor_lists, "long_factor": factor_lists}
rope_dicts = st.fixed_dictionaries(
    {}, optional={"rope_type": st.one_of(st.sampled_from([*HF_ROPE_TYPES, "su", "mrope", "yarnn"]), junk),
                  **ROPE_KEYS})
TOP_KEYS = {"head_dim": value, "hidden_size": value, "num_attention_heads": value, "rope_theta": value,
            "max_position_embeddings": value, "original_max_position_embeddings": value,
            "partial_rotary_factor": value, "rotary_dim": value, "rotary_pct": value,
            "model_type": st.one_of(st.sampled_from(["llama", "gptj", "phi3"]), junk)}
plausible_top = st.fixed_dictionaries({"head_dim": st.sampled_from([64, 128]), "max_position_embeddings":
                                       st.sampled_from([4096, 131072])},
                                      optional={k: v for k, v in TOP_KEYS.items() if k not in ("head_dim",
                                                                                            "max_position_embeddings")})
nested = st.dictionaries(st.sampled_from(["full_attention", "sliding_attention"]), rope_dicts, min_size=1)


def _only_clear_errors(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except (ValueError, TypeError) as e:
        assert str(e).strip(), f"{type(e).__name__} without a message"


@FUZZ
@given(top=st.one_of(plausible_top, st.fixed_dictionaries({}, optional=TOP_KEYS)),
       rope=st.one_of(rope_dicts, nested, junk), key=st.sampled_from(["rope_parameters", "rope_scaling"]),
       layer_type=st.sampled_from([None, "full_attention", "sliding_attention", "other"]))
def test_from_hf_fuzz(top, rope, key, layer_type):
    _only_clear_errors(from_hf, {**top, key: rope}, layer_type=layer_type)


vllm_dicts = st.fixed_dictionaries(
    {}, optional={"rope_type": st.one_of(st.sampled_from(VLLM_ROPE_TYPES), junk), "attn_factor": value,
                  "apply_yarn_scaling": value, "extrapolation_factor": value, "short_mscale": value,
                  "long_mscale": value, "mixed_b": value, **ROPE_KEYS})


@FUZZ
@given(rs=vllm_dicts, wrap=st.booleans(), head=value, base=value, max_pos=value, neox=value, rd=value)
def test_from_vllm_fuzz(rs, wrap, head, base, max_pos, neox, rd):
    if wrap:
        _only_clear_errors(from_vllm, {"rope_scaling": rs, "head_size": head, "base": base, "max_position": max_pos,
                                       "is_neox_style": neox, "rotary_dim": rd})
    else:
        _only_clear_errors(from_vllm, rs, head_dim=64, base=10000.0, max_position=4096)


flag_values = st.one_of(st.sampled_from(["0", "1", "-1", "4", "0.25", "32768", "nan", "inf", "1e400", "-0", "linear",
                                         "yarn", "none", "", "x"]), st.text(max_size=5),
                        st.floats(allow_nan=True).map(repr))
tokens = st.one_of(st.sampled_from([*LLAMA_CPP_FLAGS, "--rope-scaling=yarn", "--rope-scale=4", "-c", "--ctx-size",
                                    "--rope"]), flag_values)


@FUZZ
@given(args=st.one_of(st.lists(tokens, max_size=12), st.lists(tokens, max_size=12).map(" ".join),
                      st.lists(st.one_of(tokens, st.integers(), st.none()), max_size=4)),
       n_ctx=st.sampled_from([None, 4096]))
def test_from_llama_cpp_args_fuzz(args, n_ctx):
    _only_clear_errors(from_llama_cpp_args, args, head_dim=64, base=10000.0, n_ctx_train=n_ctx)


GGUF_KEYS = {f"llama.{k}": v for k, v in {
    "attention.head_count": st.one_of(value, st.lists(numbers, max_size=3)), "attention.key_length": value,
    "embedding_length": value, "rope.dimension_count": value, "rope.freq_base": value, "context_length": value,
    "rope.scaling.type": st.one_of(st.sampled_from(["none", "linear", "yarn", "longrope", "ntk"]), junk),
    "rope.scaling.factor": value, "rope.scale_linear": value, "rope.scaling.original_context_length": value,
    "rope.scaling.attn_factor": value, "rope.scaling.yarn_ext_factor": value, "rope.scaling.yarn_attn_factor": value,
    "rope.scaling.yarn_beta_fast": value, "rope.scaling.yarn_beta_slow": value,
    "rope.scaling.yarn_log_multiplier": value, "rope.ropekit.folded_ntk_alpha": value,
    "rope.ropekit.unfolded_freq_base": value}.items()}
tensor_values = st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=40)


@FUZZ
@given(kv=st.fixed_dictionaries({"general.architecture": st.one_of(st.just("llama"), junk),
                                 "llama.attention.key_length": st.sampled_from([64, 32])},
                                optional={k: v for k, v in GGUF_KEYS.items() if k != "llama.attention.key_length"}),
       tensors=st.dictionaries(st.sampled_from(["rope_freqs", "rope_factors_long", "rope_factors_short"]),
                               tensor_values, max_size=3))
def test_gguf_metadata_reader_fuzz(kv, tensors):
    _only_clear_errors(from_gguf_metadata, kv, {k: torch.tensor(v, dtype=torch.float64) for k, v in tensors.items()})


# -- malformed GGUF files ----------------------------------------------------------------------------------
def _valid_gguf(path) -> bytes:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_embedding_length(256)
    w.add_head_count(4)
    w.add_context_length(8192)
    w.add_rope_freq_base(500000.0)
    w.add_array("general.tags", ["a", "bc", "def"])
    w.add_tensor("rope_freqs.weight", torch.linspace(1, 8, 32).numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


_names = itertools.count()


def _read_bytes(tmp_path, data: bytes):
    """from_gguf and gguf_metadata on ``data``: a config, or a clear ValueError, quickly and in little memory."""
    p = tmp_path / f"f{next(_names)}.gguf"  # a fresh name each time: gguf_metadata memoises per path
    p.write_bytes(data)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        for fn in (gguf_metadata, from_gguf):
            try:
                fn(p)
            except (ValueError, TypeError) as e:
                assert str(e).strip()
                err = e
            else:
                err = None
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < 1.0, f"{elapsed:.2f} s"
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"
    return err


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    return data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt):]


def test_valid_file_reads(tmp_path):
    data = _valid_gguf(tmp_path / "ok.gguf")
    assert _read_bytes(tmp_path, data) is None


def test_truncated_files_fail_clearly(tmp_path):
    data = _valid_gguf(tmp_path / "ok.gguf")
    for cut in [*range(0, 120, 3), *range(120, len(data) - 1, max(1, len(data) // 60))]:
        err = _read_bytes(tmp_path, data[:cut])
        assert isinstance(err, ValueError), cut
        assert "GGUF" in str(err), str(err)


@pytest.mark.parametrize(("what", "offset", "fmt", "value", "match"), [
    ("magic", 0, "<I", 0x4C4D4747, "wrong magic"),  # b"GGML"
    ("version", 4, "<I", 99, "version 99"),
    ("tensor count", 8, "<Q", 2**63, "tensor count"),
    ("kv count", 16, "<Q", 2**62, "kv count"),
    ("first key length", 24, "<Q", 2**60, "key 0"),
])
def test_corrupt_headers_fail_clearly(tmp_path, what, offset, fmt, value, match):
    data = _valid_gguf(tmp_path / "ok.gguf")
    err = _read_bytes(tmp_path, _patch(data, offset, fmt, value))
    assert isinstance(err, ValueError)
    assert match in str(err), str(err)


def test_absurd_array_and_string_lengths_fail_clearly(tmp_path):
    data = _valid_gguf(tmp_path / "ok.gguf")
    key = data.index(b"general.tags")
    count_at = key + len(b"general.tags") + 4 + 4  # value type, item type, then the item count
    assert struct.unpack_from("<Q", data, count_at)[0] == 3
    for count in (2**40, 2**64 - 1, 10**6):
        assert "general.tags" in str(_read_bytes(tmp_path, _patch(data, count_at, "<Q", count)))
    first_item = count_at + 8
    assert "general.tags" in str(_read_bytes(tmp_path, _patch(data, first_item, "<Q", 2**50)))
    dims_at = data.index(b"rope_freqs.weight") + len(b"rope_freqs.weight") + 4
    assert "runs past the end" in str(_read_bytes(tmp_path, _patch(data, dims_at, "<Q", 2**40)))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
def test_random_byte_flips(tmp_path_factory, flips):
    tmp = tmp_path_factory.mktemp("flip")
    data = bytearray(_valid_gguf(tmp / "ok.gguf"))
    for pos, byte in flips:
        data[pos % len(data)] = byte
    _read_bytes(tmp, bytes(data))
