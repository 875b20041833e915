"""Config dialects (HF, GGUF, llama.cpp, vLLM) and checkpoint/KV conversions.

Everything here is light to import; the ``gguf`` package is imported inside the GGUF functions.
"""

from ropekit.interop.compat import (
    COMPAT_MODES,
    attention_factor,
    compat_cos_sin_table,
    compat_inv_freq,
    softmax_scale_multiplier,
)
from ropekit.interop.gguf import from_gguf
from ropekit.interop.gguf_write import to_gguf_metadata, to_gguf_tensors, write_gguf_rope
from ropekit.interop.hf import from_hf, to_hf, to_hf_per_layer_type
from ropekit.interop.kv_cache import HFCacheRerotator, RerotatingKVCache
from ropekit.interop.llama_cpp import from_llama_cpp_args, to_llama_cpp_args
from ropekit.interop.loader import load_rope_config, load_rope_plan, resolve_rope_file
from ropekit.interop.permute import layout_permutation, permute_qk
from ropekit.interop.rerotate import rerotate
from ropekit.interop.vllm import from_vllm, to_vllm

__all__ = [
    "COMPAT_MODES",
    "HFCacheRerotator",
    "RerotatingKVCache",
    "attention_factor",
    "compat_cos_sin_table",
    "compat_inv_freq",
    "from_gguf",
    "from_hf",
    "from_llama_cpp_args",
    "from_vllm",
    "layout_permutation",
    "load_rope_config",
    "load_rope_plan",
    "permute_qk",
    "rerotate",
    "resolve_rope_file",
    "softmax_scale_multiplier",
    "to_gguf_metadata",
    "to_gguf_tensors",
    "to_hf",
    "to_hf_per_layer_type",
    "to_llama_cpp_args",
    "to_vllm",
    "write_gguf_rope",
]
