"""Helpers for the fused-backend tests, imported as ``from tests.kernels import kit``.

Shared test helpers live in modules under ``tests/`` (like ``tests/patching/tiny.py``); fixtures are kept
for what needs pytest's machinery (the parametrized ``backend`` in ``conftest.py``).
"""

from __future__ import annotations

import torch

from ropekit.core.tables import cos_sin_table

TABLE_LEN = 64


def tables(rotary_dim: int, device: str = "cpu", length: int = TABLE_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 tables with a non-trivial attention factor (it must multiply cos and sin alike)."""
    inv = 10000.0 ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    return cos_sin_table(inv, length, attention_factor=1.1, device=device)


def position_kwargs(mode: str, batch: int, seqlen: int, device: str, gen: torch.Generator) -> dict:
    if mode == "default":
        return {}
    if mode == "offset":
        return {"offset": TABLE_LEN - seqlen}
    if mode == "offset_tensor":
        return {"offset": torch.randint(0, TABLE_LEN - seqlen + 1, (batch,), generator=gen).to(device)}
    if mode == "positions_1d":
        return {"positions": torch.randint(0, TABLE_LEN, (seqlen,), generator=gen).to(device, torch.int32)}
    if mode == "positions_2d":
        return {"positions": torch.randint(0, TABLE_LEN, (batch, seqlen), generator=gen).to(device)}
    raise ValueError(mode)


def varlen_kwargs(total: int, device: str) -> dict:
    # Three sequences, one of them empty, plus a per-sequence offset (e.g. cached tokens).
    a = total // 3
    cu = torch.tensor([0, a, a, total], dtype=torch.int32, device=device)
    return {"cu_seqlens": cu, "offset": torch.tensor([5, 0, 9], device=device)}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    """At most one rounding step of ``dtype`` apart, plus a few fp32 ulps of the tensor's scale.

    The fused paths round once from fp32 like the reference, but their fp32 values may differ in
    the last bit (FMA, complex multiply), which can flip one rounding of the output dtype.
    """
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    a, e = actual.double().cpu(), expected.double().cpu()
    scale = max(1.0, e.abs().max().item())
    tol = torch.finfo(dtype).eps * e.abs() + 8 * torch.finfo(torch.float32).eps * scale
    err = (a - e).abs()
    assert bool((err <= tol).all()), f"{what}: max error {err.max().item():.3g} (dtype {dtype})"
