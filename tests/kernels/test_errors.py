"""Bad input to the fused backends: a clear ValueError/TypeError naming the argument."""

from __future__ import annotations

import pytest
import torch

from ropekit.functional import apply_rotary


def _call(backend, q=None, k=None, cos=None, sin=None, **kw):
    dev = backend.device
    q = torch.randn(2, 4, 3, 16, device=dev) if q is None else q
    k = torch.randn(2, 4, 1, 16, device=dev) if k is None else k
    c = torch.ones(8, 8, device=dev) if cos is None else cos
    s = torch.zeros(8, 8, device=dev) if sin is None else sin
    return apply_rotary(q, k, c, s, backend=backend.name, **kw)


BAD = [
    ({"cos": torch.ones(8, 8, dtype=torch.bfloat16)}, TypeError, "cos_table must be float32"),
    ({"cos": torch.ones(8, 6)}, ValueError, "cos_table and sin_table"),
    ({"cos": torch.ones(8, 9), "sin": torch.ones(8, 9)}, ValueError, "rotary_dim must be in"),
    ({"q": torch.randn(2, 4, 3, 16).int()}, TypeError, "q must be a floating tensor"),
    ({"q": torch.randn(4, 3, 16)}, ValueError, r"q must be \(batch, seqlen, heads, head_dim\)"),
    ({"k": torch.randn(2, 4, 1, 8)}, ValueError, "head_dim differ"),
    ({"k": torch.randn(2, 5, 1, 16)}, ValueError, "agree on every dim"),
    ({"layout": "interleave"}, ValueError, "Did you mean 'interleaved'"),
    ({"inplace": 1}, TypeError, "inplace must be a bool"),
    ({"offset": -1}, ValueError, "offset must be >= 0"),
    ({"offset": 1.5}, TypeError, "offset must be an int"),
    ({"offset": 5}, ValueError, "cos/sin table has 8 rows"),
    ({"offset": torch.tensor([0, 5])}, ValueError, "cos/sin table has 8 rows"),
    ({"offset": torch.tensor([0, 1, 2])}, ValueError, r"offset tensor must have shape \(batch,\)"),
    ({"offset": torch.tensor([0.0, 1.0])}, TypeError, "offset must have an integer dtype"),
    ({"positions": torch.tensor([0, 1, 2, 8])}, ValueError, "positions must be < 8"),
    ({"positions": torch.tensor([0, 1, -2, 3])}, ValueError, "positions must be >= 0"),
    ({"positions": torch.tensor([0.0, 1.0, 2.0, 3.0])}, TypeError, "integer dtype"),
    ({"positions": torch.tensor([0, 1, 2])}, ValueError, r"positions must have shape \(seqlen,\)"),
    ({"positions": [0, 1, 2, 3]}, TypeError, "positions must be an integer torch.Tensor"),
    ({"positions": torch.arange(4), "offset": 2}, ValueError, "either positions or offset"),
]


@pytest.mark.parametrize(("kw", "exc", "match"), BAD, ids=lambda v: v if isinstance(v, str) else None)
def test_bad_arguments(backend, kw, exc, match):
    kw = {key: (v.to(backend.device) if isinstance(v, torch.Tensor) else v) for key, v in kw.items()}
    with pytest.raises(exc, match=match):
        _call(backend, **kw)


PACKED_BAD = [
    ({"cu_seqlens": torch.tensor([1, 4, 8])}, ValueError, "start at 0"),
    ({"cu_seqlens": torch.tensor([0, 5, 4, 8])}, ValueError, "non-decreasing"),
    ({"cu_seqlens": torch.tensor([0, 4, 7])}, ValueError, "packed token count 8"),
    ({"cu_seqlens": torch.tensor([[0, 8]])}, ValueError, "1-D int tensor"),
    ({"cu_seqlens": torch.tensor([0.0, 8.0])}, TypeError, "cu_seqlens must have an integer dtype"),
    ({"cu_seqlens": torch.tensor([0, 8]), "positions": torch.arange(8)}, ValueError, "either positions or cu_seqlens"),
    ({"cu_seqlens": torch.tensor([0, 2, 8]), "offset": 3}, ValueError, "cos/sin table has 8 rows"),
    ({"cu_seqlens": torch.tensor([0, 2, 8]), "offset": torch.tensor([7, 0])}, ValueError, "table has 8 rows"),
    ({"cu_seqlens": torch.tensor([0, 2, 8]), "offset": torch.tensor([1])}, ValueError, r"shape \(n_seqs,\)"),
]


@pytest.mark.parametrize(("kw", "exc", "match"), PACKED_BAD, ids=lambda v: v if isinstance(v, str) else None)
def test_bad_packed_arguments(backend, kw, exc, match):
    dev = backend.device
    kw = {key: (v.to(dev) if isinstance(v, torch.Tensor) else v) for key, v in kw.items()}
    q, k = torch.randn(8, 3, 16, device=dev), torch.randn(8, 1, 16, device=dev)
    with pytest.raises(exc, match=match):
        _call(backend, q=q, k=k, **kw)


def test_wrong_device_for_backend():
    q = torch.randn(1, 2, 1, 8, device="meta")
    c = torch.ones(4, 4)
    with pytest.raises(ValueError, match="backend='cpu' needs CPU tensors"):
        apply_rotary(q, None, c, c, backend="cpu")
    with pytest.raises(ValueError, match="backend='triton' needs CUDA tensors"):
        apply_rotary(q, None, c, c, backend="triton")


def test_unknown_backend_suggests():
    q = torch.randn(1, 2, 1, 8)
    c = torch.ones(4, 4)
    with pytest.raises(ValueError, match="Did you mean 'triton'"):
        apply_rotary(q, None, c, c, backend="tritn")
