"""Qwen2 / Qwen2.5 family: q/k/v biases (inside the projections), sliding window per layer type."""

from ropekit.patching._common import project_plain
from ropekit.patching.base import Family

__all__ = ["FAMILY"]

FAMILY = Family(
    name="qwen2",
    model_types=("qwen2",),
    hf_module="transformers.models.qwen2.modeling_qwen2",
    attention_name="Qwen2Attention",
    project=project_plain,
    sliding_window=lambda module: module.sliding_window,
)
