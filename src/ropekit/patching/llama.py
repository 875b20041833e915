"""Llama family (Llama 1-3, SmolLM/SmolLM2, TinyLlama, ...): HF ``LlamaAttention``, no sliding window."""

from ropekit.patching._common import project_plain
from ropekit.patching.base import Family

__all__ = ["FAMILY"]

FAMILY = Family(
    name="llama",
    model_types=("llama",),
    hf_module="transformers.models.llama.modeling_llama",
    attention_name="LlamaAttention",
    project=project_plain,
    sliding_window=lambda module: None,
)
