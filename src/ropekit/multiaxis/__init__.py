"""Multi-axis and modified rotary embeddings: M-RoPE (Qwen2-VL sectioned, Qwen3-VL interleaved), N-D axial
and learnable mixed RoPE for images/video, xPos, and p-RoPE."""

from ropekit.multiaxis.axial import RoPEMixed, apply_axial, axial_cos_sin, axial_inv_freq
from ropekit.multiaxis.mrope import apply_mrope, mrope_axis_of_pair, mrope_cos_sin
from ropekit.multiaxis.prope import p_rope_cos_sin_table, p_rope_inv_freq
from ropekit.multiaxis.xpos import apply_xpos, xpos_cos_sin

__all__ = [
    "RoPEMixed",
    "apply_axial",
    "apply_mrope",
    "apply_xpos",
    "axial_cos_sin",
    "axial_inv_freq",
    "mrope_axis_of_pair",
    "mrope_cos_sin",
    "p_rope_cos_sin_table",
    "p_rope_inv_freq",
    "xpos_cos_sin",
]
