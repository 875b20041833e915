"""Qwen3 family: per-head RMSNorm on q and k before RoPE, sliding window per layer type."""

from ropekit.patching._common import project_qk_norm
from ropekit.patching.base import Family

__all__ = ["FAMILY"]

FAMILY = Family(
    name="qwen3",
    model_types=("qwen3",),
    hf_module="transformers.models.qwen3.modeling_qwen3",
    attention_name="Qwen3Attention",
    project=project_qk_norm,
    sliding_window=lambda module: module.sliding_window,
)
