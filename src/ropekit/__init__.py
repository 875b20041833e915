"""ropekit: rotary position embeddings done right — every variant, exact, fast, and measured.

>>> import torch, ropekit
>>> cfg = ropekit.RopeConfig(head_dim=64, base=100000.0, scaling=ropekit.YaRN(factor=2.0,
...                          original_max_position_embeddings=8192))
>>> rope = ropekit.RotaryEmbedding(cfg)
>>> q, k = rope(torch.randn(1, 16, 9, 64), torch.randn(1, 16, 3, 64))
"""

from __future__ import annotations

import importlib
from typing import Any

from ropekit.core import (
    NTK,
    DynamicNTK,
    Linear,
    Llama3,
    LongRoPE,
    Proportional,
    RopeConfig,
    RopePlan,
    Scaling,
    YaRN,
    scaling_from_factor,
)
from ropekit.functional import apply_rotary
from ropekit.modules import RotaryEmbedding

__version__ = "0.1.0"

# heavier parts load on first use so `import ropekit` stays light (no transformers/triton/matplotlib)
_LAZY = {
    "patch": "ropekit.patching",
    "PatchVerificationError": "ropekit.patching",
    "load_model": "ropekit.models",
    "rope_config_of": "ropekit.models",
    "permute_qk": "ropekit.interop",
    "rerotate": "ropekit.interop",
    "guard": "ropekit.guarding",
    # training-free extension methods (ropekit.extension): configs for ropekit.patch / eval
    "SelfExtend": "ropekit.extension",
    "DualChunk": "ropekit.extension",
    "ReRoPE": "ropekit.extension",
    "LeakyReRoPE": "ropekit.extension",
    "DynamicYaRN": "ropekit.extension",
}

__all__ = [
    "NTK",
    "DynamicNTK",
    "Linear",
    "Llama3",
    "LongRoPE",
    "Proportional",
    "RopeConfig",
    "RopePlan",
    "RotaryEmbedding",
    "Scaling",
    "YaRN",
    "__version__",
    "apply_rotary",
    "scaling_from_factor",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ropekit' has no attribute {name!r}")
