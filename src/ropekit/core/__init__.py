"""Pure math and the reference: configs, frequencies, precise tables, the oracle apply.

Core imports no other ropekit layer, with one written exception: ``RopeConfig.from_hf / from_gguf /
from_llama_cpp_args / from_vllm / load / to_hf / to_gguf_metadata / ...`` and ``RopePlan.from_hf`` are thin
delegates that import :mod:`ropekit.interop` inside the method and only forward their arguments (see
docs/architecture.md; ``tests/test_architecture.py`` checks that nothing else reaches up).
"""

from ropekit.core.config import RopeConfig
from ropekit.core.frequencies import ROPE_FREQUENCIES, compute_frequencies
from ropekit.core.plan import RopePlan
from ropekit.core.reference import rotate_gathered, rotate_qk_ref
from ropekit.core.scaling import (
    NTK,
    DynamicNTK,
    Linear,
    Llama3,
    LongRoPE,
    Proportional,
    Scaling,
    YaRN,
    scaling_from_factor,
)
from ropekit.core.tables import cos_sin, cos_sin_table

__all__ = [
    "NTK",
    "ROPE_FREQUENCIES",
    "DynamicNTK",
    "Linear",
    "Llama3",
    "LongRoPE",
    "Proportional",
    "RopeConfig",
    "RopePlan",
    "Scaling",
    "YaRN",
    "compute_frequencies",
    "cos_sin",
    "cos_sin_table",
    "rotate_gathered",
    "rotate_qk_ref",
    "scaling_from_factor",
]
