"""Mistral family: Llama-style attention with one global ``config.sliding_window`` (or none)."""

from ropekit.patching._common import project_plain
from ropekit.patching.base import Family

__all__ = ["FAMILY"]

FAMILY = Family(
    name="mistral",
    model_types=("mistral",),
    hf_module="transformers.models.mistral.modeling_mistral",
    attention_name="MistralAttention",
    project=project_plain,
    sliding_window=lambda module: getattr(module.config, "sliding_window", None),
)
