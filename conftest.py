"""Root conftest: runs before any test module or doctest imports anything.

Without a GPU the Triton kernel runs under the Triton interpreter. Triton reads ``TRITON_INTERPRET``
when its jit functions are decorated — its own ``triton.language`` helpers (``tl.zeros``…) included —
so it must be set before the first ``import triton`` anywhere in the session (transformers and
torch.compile import triton too), which is why it lives here and not in ``tests/kernels``.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
