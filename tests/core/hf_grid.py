"""The exactness grid: real model configs (and variations) as HF config.json dicts, shared by tests."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent / "data"


def phi3_mini_128k() -> dict:
    d = json.loads((DATA / "phi3_mini_128k.json").read_text())
    d.pop("_comment")
    return d


LLAMA31_8B = {
    "model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 131072, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
}
QWEN25_7B_YARN = {  # Qwen2.5 long-context recipe: YaRN x4 over 32k
    "model_type": "qwen2", "hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 4,
    "max_position_embeddings": 32768, "rope_theta": 1000000.0,
    "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
}
DEEPSEEK_V2_YARN = {  # DeepSeek-V2 rope part: qk_rope_head_dim 64, mscale ratio form
    "model_type": "llama", "hidden_size": 5120, "num_attention_heads": 128, "head_dim": 64,
    "max_position_embeddings": 163840, "rope_theta": 10000.0,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                     "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
}
DEEPSEEK_V3_YARN = {  # mscale == mscale_all_dim == 1.0: the ratio collapses to 1
    "model_type": "llama", "hidden_size": 7168, "num_attention_heads": 128, "head_dim": 64,
    "max_position_embeddings": 163840, "rope_theta": 10000.0,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                     "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
}
GPT_OSS_YARN = {  # truncate=False
    "model_type": "llama", "hidden_size": 2880, "num_attention_heads": 64, "head_dim": 64,
    "max_position_embeddings": 131072, "rope_theta": 150000.0,
    "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096,
                     "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False},
}
YARN_ATTN_FACTOR = {
    "model_type": "llama", "hidden_size": 1024, "num_attention_heads": 16, "max_position_embeddings": 16384,
    "rope_theta": 10000.0,
    "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096,
                     "attention_factor": 1.25, "beta_fast": 16, "beta_slow": 2},
}
SMOLLM2_135M = {
    "model_type": "llama", "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
    "max_position_embeddings": 8192, "rope_theta": 100000.0,
}
GPT_NEOX_20B = {
    "model_type": "gpt_neox", "hidden_size": 6144, "num_attention_heads": 64, "rotary_pct": 0.25,
    "rotary_emb_base": 10000, "max_position_embeddings": 2048,
}
LINEAR_CODELLAMA = {
    "model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 16384,
    "rope_theta": 1000000.0, "rope_scaling": {"type": "linear", "factor": 4.0},
}
DYNAMIC_NTK = {
    "model_type": "llama", "hidden_size": 2048, "num_attention_heads": 32, "max_position_embeddings": 4096,
    "rope_theta": 10000.0, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0},
}
PARTIAL_YARN = {
    "model_type": "llama", "hidden_size": 2048, "num_attention_heads": 16, "partial_rotary_factor": 0.5,
    "max_position_embeddings": 8192, "rope_theta": 10000.0,
    "rope_parameters": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 4096,
                        "rope_theta": 10000.0},
}
PROPORTIONAL = {  # Gemma-style: a quarter of the frequencies rotate, over the full head_dim exponent
    "model_type": "llama", "hidden_size": 2048, "num_attention_heads": 8, "head_dim": 256,
    "max_position_embeddings": 8192,
    "rope_parameters": {"rope_type": "proportional", "rope_theta": 1000000.0, "partial_rotary_factor": 0.25},
}

#: name -> (config dict, seq_lens to evaluate at)
GRID: dict[str, tuple[dict, tuple]] = {
    "llama3.1-8b": (LLAMA31_8B, (None,)),
    "qwen2.5-7b-yarn": (QWEN25_7B_YARN, (None,)),
    "deepseek-v2-yarn": (DEEPSEEK_V2_YARN, (None,)),
    "deepseek-v3-yarn": (DEEPSEEK_V3_YARN, (None,)),
    "gpt-oss-yarn": (GPT_OSS_YARN, (None,)),
    "yarn-attention-factor": (YARN_ATTN_FACTOR, (None,)),
    "phi3-mini-128k-longrope": (None, (None, 4096, 4097, 131072)),  # filled by phi3_mini_128k()
    "smollm2-135m": (SMOLLM2_135M, (None,)),
    "gpt-neox-20b-partial": (GPT_NEOX_20B, (None,)),
    "codellama-linear": (LINEAR_CODELLAMA, (None,)),
    "dynamic-ntk": (DYNAMIC_NTK, (None, 1024, 4096, 4097, 8192, 65536)),
    "partial-yarn": (PARTIAL_YARN, (None,)),
    "proportional": (PROPORTIONAL, (None,)),
}


def grid_config(name: str) -> dict:
    d = GRID[name][0]
    return phi3_mini_128k() if d is None else json.loads(json.dumps(d))
