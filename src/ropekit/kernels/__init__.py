"""Fused RoPE backends: a Triton kernel (GPU) and a chunked CPU path, with autograd and dispatch.

Nothing here is imported by ``import ropekit``; :mod:`ropekit.functional` loads
:mod:`ropekit.kernels.dispatch` on the first ``backend="triton"``/``"cpu"`` call. Importing
:mod:`ropekit.kernels.triton_rope` imports triton.
"""

__all__: list[str] = []
