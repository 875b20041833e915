"""Training-free context extension beyond frequency scaling: Self-Extend, Dual Chunk Attention, ReRoPE,
Leaky ReRoPE and dynamic YaRN, as exact references, a chunked O(n * chunk) path, and a HF patch.

>>> import ropekit
>>> model, tok = ropekit.load_model("smollm2-135m")                                   # doctest: +SKIP
>>> with ropekit.patch(model, ropekit.SelfExtend(group_size=4, window=1024)):         # doctest: +SKIP
...     logits = model(ids).logits                                                    # 16k tokens

Nothing is imported from transformers until a model is patched (:mod:`ropekit.extension.hf`).
"""

from __future__ import annotations

from ropekit.extension.attention import SCORE_ELEMENTS, extended_attention, place, reference_attention
from ropekit.extension.methods import (
    EXTENSIONS,
    DualChunk,
    DynamicYaRN,
    Extension,
    LeakyReRoPE,
    Part,
    ReRoPE,
    SelfExtend,
    extension_from_name,
)

__all__ = [
    "EXTENSIONS", "SCORE_ELEMENTS", "DualChunk", "DynamicYaRN", "Extension", "LeakyReRoPE", "Part", "ReRoPE",
    "SelfExtend", "extended_attention", "extension_from_name", "place", "reference_attention",
]
