"""Autograd and torch.compile glue shared by the fused backends ("triton", "cpu").

Two ``torch.library`` custom ops wrap a launcher so ``torch.compile`` treats the rotation as one
opaque op (no graph break, fake-tensor shapes known): ``ropekit::rotary`` (out of place) and
``ropekit::rotary_`` (mutates q and k). :class:`RotaryFunction` gives both autograd; its backward is
the same launch with ``conj=True`` (sin negated), since a rotation's transpose is its inverse.
In eager mode the launcher is called directly: the custom-op wrapper costs tens of microseconds per
call, which is more than the kernel itself at decode sizes.

Registering the ops is a side effect of importing this module; it is imported lazily by
:mod:`ropekit.kernels.dispatch` on the first fused call, never by ``import ropekit``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["IMPLS", "RotaryFunction", "rotary", "rotate"]

#: launcher names accepted by the ops.
IMPLS: tuple[str, ...] = ("triton", "cpu")


def _launcher(impl: str) -> Any:
    if impl == "triton":
        from ropekit.kernels.triton_rope import launch
    elif impl == "cpu":
        from ropekit.kernels.cpu import launch
    else:  # pragma: no cover - callers pass IMPLS only
        raise ValueError(f"impl={impl!r} is not one of {list(IMPLS)}.")
    return launch


def _empty_like(t: torch.Tensor) -> torch.Tensor:
    # empty_like keeps dense strides and makes views of a fused qkv (non-dense) contiguous.
    return torch.empty_like(t)


@torch.library.custom_op("ropekit::rotary", mutates_args=())
def _rotary_op(
    q: torch.Tensor, k: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
    positions: torch.Tensor | None, offsets: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
    offset: int, interleaved: bool, conj: bool, impl: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    q_out = _empty_like(q)
    k_out = _empty_like(k) if k is not None else q.new_empty(0)
    _launcher(impl)(
        q, k, q_out, k_out if k is not None else None, cos, sin, positions=positions, offsets=offsets,
        cu_seqlens=cu_seqlens, offset=offset, interleaved=interleaved, conj=conj,
    )
    return q_out, k_out


@_rotary_op.register_fake
def _(q, k, cos, sin, positions, offsets, cu_seqlens, offset, interleaved, conj, impl):  # type: ignore[no-untyped-def]
    return _empty_like(q), (_empty_like(k) if k is not None else q.new_empty(0))


@torch.library.custom_op("ropekit::rotary_", mutates_args=("q", "k"))
def _rotary_inplace_op(
    q: torch.Tensor, k: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
    positions: torch.Tensor | None, offsets: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
    offset: int, interleaved: bool, conj: bool, impl: str,
) -> None:
    _launcher(impl)(
        q, k, q, k, cos, sin, positions=positions, offsets=offsets, cu_seqlens=cu_seqlens,
        offset=offset, interleaved=interleaved, conj=conj,
    )


@_rotary_inplace_op.register_fake
def _(q, k, cos, sin, positions, offsets, cu_seqlens, offset, interleaved, conj, impl):  # type: ignore[no-untyped-def]
    return None


def rotate(
    q: torch.Tensor, k: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor, *,
    positions: torch.Tensor | None, offsets: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
    offset: int, interleaved: bool, conj: bool, impl: str, inplace: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One rotation without autograd: the custom op while compiling, the launcher directly in eager."""
    if torch.compiler.is_compiling():
        # the custom ops' schema order, written once
        args = (cos, sin, positions, offsets, cu_seqlens, offset, interleaved, conj, impl)
        if inplace:
            torch.ops.ropekit.rotary_(q, k, *args)
            return q, k
        q_out, k_out = torch.ops.ropekit.rotary(q, k, *args)
        return q_out, (k_out if k is not None else None)
    if inplace:
        q_out, k_out = q, k
    else:
        q_out, k_out = _empty_like(q), (_empty_like(k) if k is not None else None)
    _launcher(impl)(q, k, q_out, k_out, cos, sin, positions=positions, offsets=offsets, cu_seqlens=cu_seqlens,
                    offset=offset, interleaved=interleaved, conj=conj)
    return q_out, k_out


def rotary(
    q: torch.Tensor, k: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor, *,
    positions: torch.Tensor | None, offsets: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
    offset: int, interleaved: bool, impl: str, inplace: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fused rotation, differentiable when a graph is being recorded: the one entry dispatch calls."""
    if not (torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad))):
        # No graph to record: skip autograd.Function, whose bookkeeping costs more than a decode-sized
        # rotation (see benchmarks/results/).
        return rotate(q, k, cos, sin, positions=positions, offsets=offsets, cu_seqlens=cu_seqlens, offset=offset,
                      interleaved=interleaved, conj=False, impl=impl, inplace=inplace)
    # autograd.Function.apply takes positional arguments only: this is the one place that spells their order
    return RotaryFunction.apply(q, k, cos, sin, positions, offsets, cu_seqlens, offset, interleaved, impl, inplace)


class RotaryFunction(torch.autograd.Function):
    """Autograd for the fused rotation (call it through :func:`rotary`); the backward rotates the
    gradients by the negated angle."""

    @staticmethod
    def forward(ctx, q, k, cos, sin, positions, offsets, cu_seqlens, offset, interleaved, impl, inplace):  # type: ignore[no-untyped-def, override]
        q_out, k_out = rotate(q, k, cos, sin, positions=positions, offsets=offsets, cu_seqlens=cu_seqlens,
                              offset=offset, interleaved=interleaved, conj=False, impl=impl, inplace=inplace)
        if inplace:
            ctx.mark_dirty(*(t for t in (q, k) if t is not None))
        ctx.save_for_backward(cos, sin, positions, offsets, cu_seqlens)
        ctx.offset, ctx.interleaved, ctx.impl, ctx.has_k = offset, interleaved, impl, k is not None
        return q_out, k_out

    @staticmethod
    def backward(ctx, grad_q, grad_k):  # type: ignore[no-untyped-def, override]
        cos, sin, positions, offsets, cu_seqlens = ctx.saved_tensors
        gk = grad_k if ctx.has_k else None
        dq, dk = rotate(grad_q, gk, cos, sin, positions=positions, offsets=offsets, cu_seqlens=cu_seqlens,
                        offset=ctx.offset, interleaved=ctx.interleaved, conj=True, impl=ctx.impl, inplace=False)
        return dq, dk, None, None, None, None, None, None, None, None, None
