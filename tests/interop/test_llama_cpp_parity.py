"""llama.cpp parity: the same ids through the ropekit-patched HF model and through llama.cpp configured only
from ``to_llama_cpp_args()`` give the same perplexity per position bucket (none / linear / YaRN), on the
real SmolLM2-135M GGUF and Python-stdlib source text.

llama-cpp-python is optional locally (skipped when absent) but required under CI (``CI`` set): .ci/run
installs it, so a missing engine there is a failure, never a silent skip.
"""

from __future__ import annotations

import itertools

import pytest

import ropekit
from ropekit.interop.llama_cpp import LLAMA_CPP_FLAGS, to_llama_cpp_args
from ropekit.interop.llama_cpp_run import (
    _FLAG_TO_KWARG,
    ROPE_SCALING_TYPES,
    llama_cpp_kwargs,
    llama_cpp_token_losses,
    verify_llama_cpp,
)
from ropekit.models import rope_config_of

L0 = 512  # small original context: positions 512..2048 are in linear's / YaRN's scaled regime
LENGTH = 4 * L0  # tokens per run: YaRN x4 reaches exactly its extended context
BUCKET = 1024  # tokens per perplexity bucket; with 512 the engines' own noise (Q8 activations) nears 1%
TOL = 0.01  # the bar: per-bucket perplexities within 1%

METHODS = {
    "none": None,
    "linear": ropekit.Linear(factor=2.0),
    "yarn": ropekit.YaRN(factor=4.0, original_max_position_embeddings=L0),
}


@pytest.fixture(scope="module")
def parity(llama_cpp, smollm2_gguf):
    """One verify_llama_cpp result per method, on one stdlib window tokenized once by the HF tokenizer."""
    from ropekit.eval.text import resolve_text, token_windows

    model = ropekit.load_model("smollm2-135m", device="cpu")
    ids = token_windows(model[1], resolve_text("stdlib"), LENGTH, 1)[0].ids
    return {name: verify_llama_cpp(smollm2_gguf, sc, ids, context=2 * BUCKET, tolerance=TOL, model=model)
            for name, sc in METHODS.items()}


# -- the flag -> constructor mapping (no engine needed) ------------------------------------------------

def _cfg(scaling):
    return ropekit.RopeConfig(head_dim=64, base=100000.0, max_position_embeddings=8192, scaling=scaling)


def test_every_dialect_flag_is_mapped():
    assert set(_FLAG_TO_KWARG) == set(LLAMA_CPP_FLAGS)


def test_kwargs_follow_the_flags():
    none = llama_cpp_kwargs(to_llama_cpp_args(_cfg(None)))
    assert none == {"rope_freq_base": 100000.0, "rope_scaling_type": ROPE_SCALING_TYPES["none"]}
    lin = _cfg(ropekit.Linear(factor=4.0))
    kw = llama_cpp_kwargs(to_llama_cpp_args(lin))
    assert kw["rope_scaling_type"] == ROPE_SCALING_TYPES["linear"]
    assert kw["rope_freq_scale"] == pytest.approx(1 / lin.scaling.factor)
    yarn = _cfg(ropekit.YaRN(factor=8.0, original_max_position_embeddings=2048, beta_fast=16.0, beta_slow=2.0,
                             attention_factor=1.3))
    args = to_llama_cpp_args(yarn)
    kw = llama_cpp_kwargs(args)
    flags = dict(zip(args[::2], args[1::2]))
    assert kw["rope_scaling_type"] == ROPE_SCALING_TYPES["yarn"]
    assert kw["rope_freq_scale"] == pytest.approx(1 / yarn.scaling.factor)
    assert kw["yarn_orig_ctx"] == yarn.scaling.original_max_position_embeddings
    assert kw["yarn_beta_fast"] == yarn.scaling.beta_fast and kw["yarn_beta_slow"] == yarn.scaling.beta_slow
    assert kw["yarn_ext_factor"] == float(flags["--yarn-ext-factor"])
    assert kw["yarn_attn_factor"] == pytest.approx(float(flags["--yarn-attn-factor"]))
    assert llama_cpp_kwargs("--rope-freq-scale 0.5 -c 4096") == {"rope_freq_scale": 0.5, "n_ctx": 4096}
    assert llama_cpp_kwargs("--rope-scale=2 --rope-freq-scale=0.5") == {"rope_freq_scale": 0.5}


@pytest.mark.parametrize(("args", "match"), [
    (["--n-gpu-layers", "3"], "--n-gpu-layers"),  # a real llama.cpp flag without a mapping here
    (["--rope-scaling", "yarn", "stray"], "'stray'"),
    (["--rope-freqbase", "1e4"], "--rope-freqbase"),
    (["--rope-scale"], "needs a value"),
    (["--rope-scale", "two"], "--rope-scale"),
    (["--rope-scale", "0"], "--rope-scale"),
    (["--yarn-orig-ctx", "10.5"], "--yarn-orig-ctx"),
    (["--rope-scaling", "longrope"], "--rope-scaling"),
    (["--rope-scaling", "none", "--rope-scale", "4"], "none"),
    (["--rope-scale", "4", "--rope-freq-scale", "0.5"], "disagree"),
])
def test_mapper_fails_closed(args, match):
    with pytest.raises(ValueError, match=match):
        llama_cpp_kwargs(args)


def test_mapper_rejects_non_strings():
    with pytest.raises(TypeError, match="strings"):
        llama_cpp_kwargs(["--rope-scale", 4])
    with pytest.raises(TypeError, match="args"):
        llama_cpp_kwargs(4)


# -- the engine ------------------------------------------------------------------------------------------

def test_scaling_type_values_match_llama_h(llama_cpp):
    for name, value in ROPE_SCALING_TYPES.items():
        assert getattr(llama_cpp, f"LLAMA_ROPE_SCALING_TYPE_{name.upper()}") == value


def test_runner_refuses_bad_input(llama_cpp, smollm2_gguf):
    with pytest.raises(ValueError, match="--ctx-size"):
        llama_cpp_token_losses(smollm2_gguf, [1, 2, 3, 4], ["-c", "2"])
    with pytest.raises(ValueError, match="vocabulary"):
        llama_cpp_token_losses(smollm2_gguf, [1, 10**7], [])
    with pytest.raises(ValueError, match="at least 2"):
        llama_cpp_token_losses(smollm2_gguf, [1], [])


@pytest.mark.parametrize("method", list(METHODS))
def test_perplexity_parity(parity, method):
    r = parity[method]
    assert r["n_tokens"] == LENGTH and r["buckets"][-1]["hi"] == LENGTH
    assert [b["lo"] for b in r["buckets"]] == list(range(0, LENGTH, BUCKET))
    # llama.cpp's RoPE came from ropekit's flags for the model's own config with this scaling
    assert r["llama_cpp_args"] == to_llama_cpp_args(rope_config_of("smollm2-135m").replace(scaling=METHODS[method]))
    report = [(b["label"], round(b["ppl_hf"], 3), round(b["ppl_llama_cpp"], 3)) for b in r["buckets"]]
    assert r["ok"] and r["max_rel_diff"] <= TOL, report


def test_the_tolerance_tells_methods_apart(parity):
    """The 1% bar is meaningful: llama.cpp under another method's flags misses HF by more than 1% somewhere."""
    for a, b in itertools.permutations(METHODS, 2):
        gaps = [abs(y["ppl_llama_cpp"] - x["ppl_hf"]) / x["ppl_hf"]
                for x, y in zip(parity[a]["buckets"], parity[b]["buckets"], strict=True)]
        assert max(gaps) > TOL, (a, b, gaps)

