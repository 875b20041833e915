"""Peer grids shared by ropekit's tests and benchmarks (not used by the library itself).

:data:`GRID` holds real model configs (and variations) as HF ``config.json`` dicts; :func:`hf_frequencies`
asks transformers what it computes for one, so exactness is always checked against the peer, never
against numbers written down here. Importing this module needs only the standard library.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["GRID", "grid_config", "hf_frequencies", "phi3_mini_128k"]

PHI3_MINI_128K = {  # RoPE fields of the public Phi-3-mini-128k-instruct config.json (real LongRoPE factor lists)
    "model_type": 'phi3',
    "hidden_size": 3072,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 131072,
    "original_max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "rope_scaling": {
        "type": 'longrope',
        "long_factor": [
            1.0299999713897705, 1.0499999523162842, 1.0499999523162842, 1.0799999237060547, 1.2299998998641968,
            1.2299998998641968, 1.2999999523162842, 1.4499999284744263, 1.5999999046325684, 1.6499998569488525,
            1.8999998569488525, 2.859999895095825, 3.68999981880188, 5.419999599456787, 5.489999771118164,
            5.489999771118164, 9.09000015258789, 11.579999923706055, 15.65999984741211, 15.769999504089355,
            15.789999961853027, 18.360000610351562, 21.989999771118164, 23.079999923706055, 30.009998321533203,
            32.35000228881836, 32.590003967285156, 35.56000518798828, 39.95000457763672, 53.840003967285156,
            56.20000457763672, 57.95000457763672, 59.29000473022461, 59.77000427246094, 59.920005798339844,
            61.190006256103516, 61.96000671386719, 62.50000762939453, 63.3700065612793, 63.48000717163086,
            63.48000717163086, 63.66000747680664, 63.850006103515625, 64.08000946044922, 64.760009765625,
            64.80001068115234, 64.81001281738281, 64.81001281738281,
        ],
        "short_factor": [
            1.05, 1.05, 1.05, 1.1, 1.1, 1.1, 1.2500000000000002, 1.2500000000000002, 1.4000000000000004,
            1.4500000000000004, 1.5500000000000005, 1.8500000000000008, 1.9000000000000008, 2.000000000000001,
            2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
            2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
            2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
            2.000000000000001, 2.000000000000001, 2.000000000000001, 2.1000000000000005, 2.1000000000000005, 2.2,
            2.3499999999999996, 2.3499999999999996, 2.3499999999999996, 2.3499999999999996, 2.3999999999999995,
            2.3999999999999995, 2.6499999999999986, 2.6999999999999984, 2.8999999999999977, 2.9499999999999975,
            3.049999999999997, 3.049999999999997, 3.049999999999997,
        ],
    },
}


def phi3_mini_128k() -> dict:
    """The RoPE fields of the public Phi-3-mini-128k-instruct config.json, as a fresh dict."""
    return json.loads(json.dumps(PHI3_MINI_128K))


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
GRID: dict[str, tuple[dict | None, tuple]] = {
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
    """A fresh copy of grid entry ``name`` (callers may edit it).

    >>> grid_config("smollm2-135m")["rope_theta"]
    100000.0
    """
    if name not in GRID:
        raise ValueError(f"name={name!r} is not one of {sorted(GRID)}.")
    d = GRID[name][0]
    return phi3_mini_128k() if d is None else json.loads(json.dumps(d))


def hf_frequencies(d: dict, seq_len: int | None) -> tuple[Any, float]:
    """What transformers itself computes for this config.json dict: ``(inv_freq, attention_factor)``."""
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    d = dict(d)
    model_type = d.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **d)
    params = cfg.rope_parameters
    rope_type = params.get("rope_type", "default")
    if rope_type == "default":
        from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        rotary: Any = GPTNeoXRotaryEmbedding if model_type == "gpt_neox" else LlamaRotaryEmbedding
        return rotary.compute_default_rope_parameters(cfg)
    kw = {} if seq_len is None else {"seq_len": seq_len}
    return ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu", **kw)
