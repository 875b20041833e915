"""Only the optional native CPU kernel lives here; everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and the CPU backend falls back
to its pure-torch path (``ropekit.kernels.cpu_native.available()`` says which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ropekit.kernels._rope_cpu",
            sources=["src/ropekit/kernels/_rope_cpu.c"],
            # -O3 for the vectoriser; no -ffast-math: NaN/inf must propagate as in torch.
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
            optional=True,
        )
    ]
)
