"""Real-world RoPE misconfigurations, each from a public bug report (repo + issue/PR number in ``source``).

Each case is config snippets and flags only (never weights), rebuilt from what the report describes, and
names the finding code ``ropekit doctor`` must produce for it (and for which engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Case:
    name: str  # short id
    source: str  # the public report: "owner/repo #N"
    what: str  # the misconfiguration, in one line
    deployment: dict[str, Any]  # ropekit.doctor.Deployment keyword arguments
    expect: str  # the finding code that must be produced
    engine: str  # the engine it must be produced for ("config": the checkpoint itself)
    engines: str | tuple[str, ...] = "all"
    context: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def llama(**kw: Any) -> dict[str, Any]:
    """A small Llama-style text config (head_dim 64) with ``kw`` on top."""
    return {"model_type": "llama", "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 4,
            "num_hidden_layers": 2, "intermediate_size": 512, "vocab_size": 256, "max_position_embeddings": 8192, **kw}


def gemma3(rope_parameters: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"model_type": "gemma3_text", "hidden_size": 256, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 128, "num_hidden_layers": 6, "intermediate_size": 512, "vocab_size": 256,
            "max_position_embeddings": 131072, "sliding_window": 1024,
            "layer_types": ["sliding_attention"] * 5 + ["full_attention"], "rope_parameters": rope_parameters, **kw}


GEMMA3_ROPE = {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
               "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}}
PHI3_SHORT = [1.0 + i / 100 for i in range(48)]
PHI3_LONG = [1.0 + i for i in range(48)]


def phi3(**kw: Any) -> dict[str, Any]:
    return {"model_type": "phi3", "hidden_size": 3072, "num_attention_heads": 32, "num_key_value_heads": 32,
            "num_hidden_layers": 2, "intermediate_size": 512, "vocab_size": 256, "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096, "rope_theta": 10000.0,
            "rope_scaling": {"type": "longrope", "short_factor": PHI3_SHORT, "long_factor": PHI3_LONG}, **kw}


V5_LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
             "original_max_position_embeddings": 8192, "rope_theta": 500000.0}

CASES = [
    # -- the transformers-v5 move to rope_parameters ----------------------------------------------------
    Case(name="deepspeed-8345", source="deepspeedai/DeepSpeed #8345",
         what="code reading config.rope_theta (v4 style) on a v5 config silently gets the default",
         deployment={"hf_config": llama(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
                     "hf_version": 4}, expect="theta-defaulted", engine="hf", engines="hf"),
    Case(name="deepspeed-8341", source="deepspeedai/DeepSpeed #8341",
         what="a v4 reader ignores the llama3 scaling that a v5 config keeps in rope_parameters",
         deployment={"hf_config": llama(max_position_embeddings=131072, rope_parameters=V5_LLAMA3), "hf_version": 4},
         expect="legacy-key-ignored", engine="hf", engines="hf"),
    Case(name="unsloth-7028", source="unslothai/unsloth #7028",
         what="a synthesized linear rope dict drops rope_theta (ppl 11,316 at 7.8k on v5)",
         deployment={"hf_config": llama(rope_parameters={"rope_type": "linear", "factor": 4.0})},
         expect="theta-missing", engine="config"),
    Case(name="megatron-bridge-3077", source="NVIDIA-NeMo/Megatron-Bridge #3077",
         what="an override of rope_parameters loses rope_theta",
         deployment={"hf_config": llama(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
                     "hf_overrides": {"rope_parameters": {"rope_type": "yarn", "factor": 2.0,
                                                          "original_max_position_embeddings": 8192}}},
         expect="theta-defaulted", engine="hf", engines="hf"),
    Case(name="vllm-28542", source="vllm-project/vllm #28542",
         what="after the v5 move vLLM's rope dict has no rope_theta (default base used)",
         deployment={"hf_config": llama(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
                     "vllm_args": {"hf_overrides": {"rope_parameters": {"rope_type": "default"}}}},
         expect="theta-defaulted", engine="vllm", engines="vllm"),
    Case(name="trt-model-connect-399", source="NVIDIA/TensorRT-Model-Connect #399",
         what="gpt-oss ships its YaRN in rope_scaling while the reader takes rope_parameters",
         deployment={"hf_config": llama(model_type="gpt_oss", max_position_embeddings=131072,
                                        rope_parameters={"rope_type": "default", "rope_theta": 150000.0},
                                        rope_scaling={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                                      "beta_slow": 1.0, "truncate": False,
                                                      "original_max_position_embeddings": 4096})},
         expect="legacy-key-conflict", engine="config", engines="hf"),
    Case(name="vllm-10537", source="vllm-project/vllm #10537",
         what="advice to run Llama-3.1 with dynamic x8 and rope_theta 1.2e6 although it ships llama3 scaling",
         deployment={"hf_config": llama(max_position_embeddings=131072, rope_theta=500000.0,
                                        rope_scaling={k: v for k, v in V5_LLAMA3.items() if k != "rope_theta"}),
                     "hf_overrides": {"rope_scaling": {"rope_type": "dynamic", "factor": 8.0}, "rope_theta": 1.2e6}},
         expect="base-mismatch", engine="vllm", engines="vllm"),
    # -- per-layer-type RoPE ----------------------------------------------------------------------------
    Case(name="mlx-vlm-1709", source="Blaizzy/mlx-vlm #1709",
         what="Gemma-3 global layers run unscaled (a flat rope dict where the model reads per layer type)",
         deployment={"hf_config": gemma3(GEMMA3_ROPE), "hf_overrides": {"rope_parameters": {
             "rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}}},
         expect="layer-type-mismatch", engine="hf", engines="hf"),
    Case(name="mlxcel-1340", source="lablup/mlxcel #1340",
         what="Gemma-3 scaling put on the sliding layers, global layers left unscaled",
         deployment={"hf_config": gemma3({"sliding_attention": GEMMA3_ROPE["full_attention"],
                                          "full_attention": GEMMA3_ROPE["sliding_attention"]})},
         expect="layer-type-mismatch", engine="config", engines="hf"),
    # -- dynamic NTK ------------------------------------------------------------------------------------
    Case(name="vllm-5093", source="vllm-project/vllm #5093",
         what="vLLM's 'dynamic' NTK is static: the base is frozen at L0*s",
         deployment={"hf_config": llama(max_position_embeddings=4096, rope_theta=10000.0,
                                        rope_scaling={"type": "dynamic", "factor": 2.0})},
         expect="dynamic-as-static", engine="vllm"),
    Case(name="vllm-3488", source="vllm-project/vllm #3488",
         what="dynamic NTK with a max_model_len: vLLM still runs one fixed base",
         deployment={"hf_config": llama(max_position_embeddings=32768, rope_theta=1000000.0,
                                        rope_scaling={"rope_type": "dynamic", "factor": 4.0}),
                     "vllm_args": {"max_model_len": 65536}},
         expect="dynamic-as-static", engine="vllm", engines="vllm"),
    Case(name="llama-cpp-2060", source="ggml-org/llama.cpp #2060",
         what="llama.cpp has no dynamic NTK: a dynamic checkpoint runs unscaled",
         deployment={"hf_config": llama(max_position_embeddings=4096, rope_theta=10000.0,
                                        rope_scaling={"rope_type": "dynamic", "factor": 2.0})},
         expect="scaling-not-applied", engine="llama.cpp", engines="llama.cpp"),
    # -- LongRoPE switching -----------------------------------------------------------------------------
    Case(name="vllm-27431", source="vllm-project/vllm #27431",
         what="vLLM picks LongRoPE factors once from max_model_len; HF switches per sequence",
         deployment={"hf_config": phi3()}, expect="longrope-switch", engine="vllm", engines="vllm"),
    Case(name="unsloth-10681", source="unslothai/unsloth #10681",
         what="off by one at exactly L0: where short factors end differs between engines",
         deployment={"hf_config": phi3(), "llama_cpp_args": "-c 131072"},
         expect="longrope-switch", engine="llama.cpp", engines="llama.cpp"),
    Case(name="llama-cpp-24875", source="ggml-org/llama.cpp #24875",
         what="HF throws the cache away at L0+1 (switch per sequence); llama.cpp picks once from n_ctx",
         deployment={"hf_config": phi3(), "llama_cpp_args": ["--ctx-size", "8192"]},
         expect="longrope-switch", engine="llama.cpp", engines="llama.cpp"),
    # -- partial rotary ---------------------------------------------------------------------------------
    Case(name="vllm-43770", source="vllm-project/vllm #43770",
         what="partial_rotary_factor worked out as 1: the factor sits where the reader does not look",
         deployment={"hf_config": llama(rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                         "partial_rotary_factor": 0.5}, rope_theta=10000.0),
                     "hf_version": 4}, expect="partial-rotary-dropped", engine="hf", engines="hf"),
    Case(name="llama-cpp-12099", source="ggml-org/llama.cpp #12099",
         what="Phi-4-mini partial 0.75: a GGUF without rope.dimension_count rotates the whole head",
         deployment={"hf_config": llama(model_type="phi3", hidden_size=3072, num_attention_heads=24,
                                        rope_theta=10000.0, partial_rotary_factor=0.75),
                     "gguf": {"general.architecture": "phi3", "phi3.embedding_length": 3072,
                              "phi3.attention.head_count": 24, "phi3.rope.freq_base": 10000.0,
                              "phi3.context_length": 8192, "phi3.block_count": 2}},
         expect="partial-rotary-dropped", engine="llama.cpp", engines="llama.cpp"),
    # -- GGUF conversion --------------------------------------------------------------------------------
    Case(name="llama-cpp-13322", source="ggml-org/llama.cpp #13322",
         what="Qwen3-MoE converted without its YaRN keys: llama.cpp runs unscaled",
         deployment={"hf_config": llama(model_type="qwen3_moe", max_position_embeddings=131072, rope_theta=1e6,
                                        rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                      "original_max_position_embeddings": 32768}),
                     "gguf": {"general.architecture": "qwen3moe", "qwen3moe.embedding_length": 256,
                              "qwen3moe.attention.head_count": 4, "qwen3moe.rope.freq_base": 1e6,
                              "qwen3moe.context_length": 131072, "qwen3moe.block_count": 2}},
         expect="gguf-missing-scaling", engine="llama.cpp", engines="llama.cpp"),
    Case(name="llama-cpp-2841", source="ggml-org/llama.cpp #2841",
         what="LLaMA-2-7B-32K (linear x8) as a GGUF without its rope scale: it must come from flags or keys",
         deployment={"hf_config": llama(max_position_embeddings=32768, rope_theta=10000.0,
                                        rope_scaling={"type": "linear", "factor": 8.0}),
                     "gguf": {"general.architecture": "llama", "llama.embedding_length": 256,
                              "llama.attention.head_count": 4, "llama.rope.freq_base": 10000.0,
                              "llama.context_length": 32768, "llama.block_count": 2}},
         expect="gguf-missing-scaling", engine="llama.cpp", engines="llama.cpp"),
    # -- pair layout -------------------------------------------------------------------------------------
    Case(name="trt-llm-16378", source="NVIDIA/TensorRT-LLM #16378",
         what="gpt-oss run with is_neox false: interleaved pairs on half-layout weights",
         deployment={"hf_config": llama(model_type="gpt_oss", rope_theta=150000.0),
                     "vllm_args": {"is_neox_style": False}},
         expect="layout-mismatch", engine="vllm", engines="vllm"),
    Case(name="openvino-36165", source="openvinotoolkit/openvino #36165",
         what="weights written for one pair layout, read in the other (GGUF arch with the wrong rope mode)",
         deployment={"hf_config": llama(model_type="qwen2", rope_theta=1e6),
                     "gguf": {"general.architecture": "llama", "llama.embedding_length": 256,
                              "llama.attention.head_count": 4, "llama.rope.freq_base": 1e6,
                              "llama.context_length": 8192, "llama.block_count": 2}},
         expect="layout-mismatch", engine="llama.cpp", engines="llama.cpp"),
    # -- YaRN parameters --------------------------------------------------------------------------------
    Case(name="torchtitan-4117", source="pytorch/torchtitan #4117",
         what="YaRN with original_max_position_embeddings equal to max_position_embeddings",
         deployment={"hf_config": llama(max_position_embeddings=32768, rope_theta=1e6,
                                        rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                      "original_max_position_embeddings": 32768})},
         expect="factor-inconsistent", engine="config", engines="hf"),
    Case(name="exllamav2-642", source="turboderp-org/exllamav2 #642",
         what="YaRN without original_max_position_embeddings: L0 falls back to the extended context",
         deployment={"hf_config": llama(max_position_embeddings=131072, rope_theta=1e6,
                                        rope_scaling={"rope_type": "yarn", "factor": 4.0})},
         expect="factor-inconsistent", engine="config", engines="hf"),
    Case(name="mlx-lm-1507", source="ml-explore/mlx-lm #1507",
         what="an explicit YaRN attention_factor ignored (vLLM reads attn_factor)",
         deployment={"hf_config": llama(max_position_embeddings=32768, rope_theta=1e6,
                                        rope_scaling={"rope_type": "yarn", "factor": 4.0, "attention_factor": 1.0,
                                                      "original_max_position_embeddings": 8192})},
         expect="engine-differs", engine="vllm", engines="vllm"),
    Case(name="meta-oss-cookbook-37", source="meta-models/meta-oss-cookbook #37",
         what="YaRN flags 'active' yet a no-op: --rope-scaling yarn without a scale is factor 1",
         deployment={"hf_config": llama(rope_theta=100000.0), "llama_cpp_args": "-c 16384 --rope-scaling yarn"},
         expect="context-uncovered", engine="llama.cpp", engines="llama.cpp"),
    # -- context past the trained one -------------------------------------------------------------------
    Case(name="exllamav3-29", source="turboderp-org/exllamav3 #29",
         what="Qwen3 (32k) asked for 128k without adding the YaRN it needs",
         deployment={"hf_config": llama(model_type="qwen3", max_position_embeddings=32768, rope_theta=1e6)},
         expect="context-uncovered", engine="hf", engines="hf", context=131072),
    Case(name="xinfer-274", source="guoqingbao/xinfer #274",
         what="--max-model-len past the trained length with no YaRN applied",
         deployment={"hf_config": llama(model_type="qwen2", max_position_embeddings=32768, rope_theta=1e6),
                     "vllm_args": {"max_model_len": 65536}},
         expect="context-uncovered", engine="vllm", engines="vllm"),
    # -- precision ---------------------------------------------------------------------------------------
    Case(name="transformers-29285", source="huggingface/transformers #29285",
         what="RoPE loses precision for Llama at long positions (fp32 angles)",
         deployment={"hf_config": llama(max_position_embeddings=131072, rope_parameters=V5_LLAMA3)},
         expect="fp32-angle-error", engine="hf", engines="hf"),
]
