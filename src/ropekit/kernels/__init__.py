"""Fused RoPE backends: a Triton kernel (GPU) and a CPU path (native C kernel, pure-torch fallback).

The C kernel (``_rope_cpu.c``) is built by ``setup.py`` at install when a compiler is present.
Nothing here is imported by ``import ropekit``; :mod:`ropekit.functional` loads
:mod:`ropekit.kernels.dispatch` on the first ``backend="triton"``/``"cpu"`` call. Importing
:mod:`ropekit.kernels.triton_rope` imports triton.
"""

__all__: list[str] = []
