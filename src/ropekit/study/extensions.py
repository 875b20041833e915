"""The training-free extensions of :mod:`ropekit.extension` as study eval variants, with their settings per context.

Each method is set on a trained RoPE model (its RoPE layers; a hybrid's NoPE layers keep plain attention) at
evaluation context C, for training length L. The settings follow one rule each, so that no relative
position the model meets exceeds what it was trained on (DCA: by one, see below) and, where the method
allows, 1x is plain RoPE:

==================  ==================================================================================
``self-extend``     window W = L/2, group G = the smallest whose largest grouped distance (query C - 1, key
                    0, by the method's own map) is at most L - 1 (G = 1 at C = L: plain RoPE; 4 / 8 / 16 at
                    2x / 4x / 8x for L = 128)
``dca``             chunk_size = L, local_size = L/8, as Qwen2.5-1M sets chunk_size to its trained length
                    (its local_size is 1/32 of that; L/8 keeps 16 exact neighbours at L = 128). The largest
                    distance is then L, one past the trained L - 1; exact up to C = L
``rerope``          window w = L/2 (distances >= w are seen as w, also at C = L)
``leaky-rerope``    window w = L/2, slope k = max(1, (C - 1 - w) / (L - 1 - w)): the largest distance
                    C - 1 maps to L - 1 (k = 1 at C = L: plain RoPE)
``dynamic-yarn``    original_max_position_embeddings = L: every forward here has length C, so this is
                    static YaRN at factor C / L (a consistency check against the ``yarn`` scaling)
==================  ==================================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ropekit.core.validation import check_choice, check_positive_int

__all__ = ["EXTENSION_VARIANTS", "study_extension"]

#: eval-variant names, as :data:`ropekit.extension.EXTENSIONS` names them
EXTENSION_VARIANTS: tuple[str, ...] = ("self-extend", "dca", "rerope", "leaky-rerope", "dynamic-yarn")


def _group(c: int, n: int) -> int:
    from ropekit.extension import SelfExtend

    far = (torch.tensor([[c - 1]]), torch.tensor([[0]]))  # the pair with the largest grouped distance
    g = 1
    while float(SelfExtend(group_size=g, window=n // 2).relative(*far)) > n - 1:
        g += 1
    return g


def _slope(c: int, n: int) -> float:
    return max(1.0, (c - 1 - n // 2) / (n - 1 - n // 2))


#: variant -> (context C, training length L) -> the method's parameters (the rules in the module doc)
_PARAMS: dict[str, Callable[[int, int], dict[str, Any]]] = {
    "self-extend": lambda c, n: {"group_size": _group(c, n), "window": n // 2},
    "dca": lambda c, n: {"chunk_size": n, "local_size": max(1, n // 8)},
    "rerope": lambda c, n: {"window": n // 2},
    "leaky-rerope": lambda c, n: {"window": n // 2, "slope": _slope(c, n)},
    "dynamic-yarn": lambda c, n: {"original_max_position_embeddings": n},
}


def study_extension(name: str, context: int, train_len: int) -> Any:
    """The :mod:`ropekit.extension` config for variant ``name`` at evaluation context ``context``.

    >>> study_extension("self-extend", 1024, 128)
    SelfExtend(group_size=16, window=64, compat='paper')
    >>> study_extension("leaky-rerope", 128, 128).slope
    1.0
    """
    from ropekit.extension import extension_from_name

    check_choice("extension", name, EXTENSION_VARIANTS)
    check_positive_int("context", context)
    if check_positive_int("train_len", train_len) < 4:
        raise ValueError(f"train_len={train_len} must be >= 4 for the extensions' windows (L/2, L/8).")
    return extension_from_name(name, **_PARAMS[name](context, train_len))
