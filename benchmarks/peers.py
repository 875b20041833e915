"""Implementations compared by ``bench_apply.py``: ropekit's backends and peer libraries.

Each builder takes a :class:`Case` and returns ``Impl(fn, args, inplace)`` where ``fn(*args)``
rotates q and k (``args[0]``, ``args[1]`` are the q and k tensors, in the layout that peer expects,
prepared outside the timed region), or raises ``Unsupported`` with the reason. Peers that are not
installed are reported as such, never silently dropped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ropekit.core.tables import cos_sin_table
from ropekit.functional import apply_rotary
from ropekit.kernels import cpu_native

__all__ = ["BUILDERS", "Case", "Impl", "Unsupported"]

BASE = 500000.0  # Llama-3


class Unsupported(Exception):
    """The implementation cannot run this case (not installed, wrong device, no such feature)."""


@dataclass
class Case:
    """q ``(batch, seqlen, q_heads, head_dim)``, k ``(batch, seqlen, kv_heads, head_dim)``; ``layout``
"half" (NeoX/HF, i <-> i + d/2) or "interleaved" (GPT-J, 2i <-> 2i+1)."""

    name: str
    batch: int
    seqlen: int
    hq: int
    hkv: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device
    positions: torch.Tensor | None = None  # (batch, seqlen) int64 when scattered (decode)
    layout: str = "half"

    def __post_init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        shape = (self.batch, self.seqlen)
        self.q = torch.randn(*shape, self.hq, self.head_dim, generator=gen).to(self.device, self.dtype)
        self.k = torch.randn(*shape, self.hkv, self.head_dim, generator=gen).to(self.device, self.dtype)
        d = self.head_dim
        self.inv_freq = BASE ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        top = self.seqlen if self.positions is None else int(self.positions.max()) + 1
        self.cos, self.sin = cos_sin_table(self.inv_freq, top, device=self.device)
        if self.positions is not None:
            self.positions = self.positions.to(self.device)

    @property
    def bytes_moved(self) -> int:
        """Read + write of q and k once: the memory floor of one rotation."""
        return 2 * (self.q.numel() + self.k.numel()) * self.q.element_size()

    def position_ids(self) -> torch.Tensor:
        if self.positions is not None:
            return self.positions
        return torch.arange(self.seqlen, device=self.device).expand(self.batch, -1)


@dataclass
class Impl:
    fn: Callable[..., object]
    args: tuple
    inplace: bool = False
    differentiable: bool = True


def _ropekit(backend: str, inplace: bool = False, native: bool = True) -> Callable[[Case], Impl]:
    """``native=False``: the CPU backend's pure-torch path (what runs without a C compiler)."""

    def build(c: Case) -> Impl:
        if backend == "triton" and c.device.type != "cuda":
            raise Unsupported("needs CUDA")
        if backend == "cpu" and c.device.type != "cpu":
            raise Unsupported("CPU only")
        if backend == "cpu" and native and not cpu_native.available(c.dtype):
            raise Unsupported("native CPU kernel not built (no C compiler at install?)")
        kw = {"positions": c.positions} if c.positions is not None else {}

        def fn(q, k):
            return apply_rotary(q, k, c.cos, c.sin, backend=backend, inplace=inplace, layout=c.layout, **kw)

        if not native:
            inner = fn

            def fn(q, k):
                with _native_off():
                    return inner(q, k)

        return Impl(fn, (c.q.clone(), c.k.clone()), inplace)

    return build


@contextlib.contextmanager
def _native_off():
    saved = cpu_native.available
    cpu_native.available = lambda dtype=None: False
    try:
        yield
    finally:
        cpu_native.available = saved


def _copy(c: Case) -> Impl:
    # The floor: the same bytes read and written, into preallocated outputs.
    def fn(q, k, qo, ko):
        return qo.copy_(q), ko.copy_(k)

    return Impl(fn, (c.q, c.k, torch.empty_like(c.q), torch.empty_like(c.k)), differentiable=False)


def _clone(c: Case) -> Impl:
    # What any out-of-place op pays: the same bytes into freshly allocated outputs (on CPU, the first
    # touch of fresh pages costs as much as the copy itself).
    return Impl(lambda q, k: (q.clone(), k.clone()), (c.q, c.k), differentiable=False)


def _half_only(c: Case) -> None:
    if c.layout != "half":
        raise Unsupported("half (NeoX) layout only")


def _hf(c: Case) -> Impl:
    _half_only(c)
    try:
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
    except ImportError as exc:
        raise Unsupported(f"transformers not importable: {exc}") from exc
    cfg = LlamaConfig(hidden_size=c.hq * c.head_dim, num_attention_heads=c.hq, num_key_value_heads=c.hkv,
                      head_dim=c.head_dim, rope_theta=BASE, max_position_embeddings=1 << 20)
    rotary = LlamaRotaryEmbedding(cfg).to(c.device)
    cos, sin = rotary(c.q, c.position_ids())  # once per model forward in HF: outside the timed region

    def fn(q, k, cos, sin):
        return apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=2)  # our (batch, seq, heads, dim) layout

    return Impl(fn, (c.q.clone(), c.k.clone(), cos, sin))


def _rotary_embedding_torch(c: Case) -> Impl:
    try:
        from rotary_embedding_torch import RotaryEmbedding
    except ImportError as exc:
        raise Unsupported("rotary-embedding-torch not installed") from exc
    if c.positions is not None:
        raise Unsupported("no per-token positions")
    # Its pairing is always interleaved (GPT-J); the timing is comparable either way.
    rot = RotaryEmbedding(dim=c.head_dim, theta=BASE, use_xpos=False).to(c.device)

    def fn(q, k):
        return rot.rotate_queries_or_keys(q, seq_dim=-3), rot.rotate_queries_or_keys(k, seq_dim=-3)

    return Impl(fn, (c.q.clone(), c.k.clone()))


def _cache_cat(c: Case, dtype: torch.dtype | None = None) -> torch.Tensor:
    table = torch.cat((c.cos, c.sin), dim=-1)  # (max_pos, rotary_dim) = [cos | sin]
    return table if dtype is None else table.to(dtype)


def _flat_tokens(c: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positions (tokens,), q (tokens, hq*d), k (tokens, hkv*d)): the token-major layout of vLLM/FlashInfer."""
    pos = c.position_ids().reshape(-1).contiguous()
    return pos, c.q.reshape(-1, c.hq * c.head_dim).clone(), c.k.reshape(-1, c.hkv * c.head_dim).clone()


def _liger(c: Case) -> Impl:
    _half_only(c)
    if c.device.type != "cuda":
        raise Unsupported("needs CUDA")
    try:
        from liger_kernel.ops.rope import LigerRopeFunction
    except ImportError as exc:
        raise Unsupported("liger-kernel not installed") from exc
    pos = c.position_ids()
    cos = torch.cat((c.cos[pos], c.cos[pos]), -1)  # HF-style full width (batch, seq, dim)
    sin = torch.cat((c.sin[pos], c.sin[pos]), -1)
    q, k = c.q.transpose(1, 2).contiguous(), c.k.transpose(1, 2).contiguous()  # Liger wants (b, h, s, d)
    return Impl(lambda q, k: LigerRopeFunction.apply(q, k, cos, sin), (q, k))


def _flash_attn(c: Case) -> Impl:
    if c.device.type != "cuda":
        raise Unsupported("needs CUDA")
    try:
        from flash_attn.layers.rotary import apply_rotary_emb
    except ImportError as exc:
        raise Unsupported("flash-attn not installed") from exc
    if c.positions is not None and c.seqlen != 1:
        raise Unsupported("no per-token positions")
    offs = c.positions[:, 0].to(torch.int32).contiguous() if c.positions is not None else 0
    il = c.layout == "interleaved"

    def fn(q, k):
        return (apply_rotary_emb(q, c.cos, c.sin, interleaved=il, seqlen_offsets=offs),
                apply_rotary_emb(k, c.cos, c.sin, interleaved=il, seqlen_offsets=offs))

    return Impl(fn, (c.q.clone(), c.k.clone()))


def _flashinfer(c: Case) -> Impl:
    if c.device.type != "cuda":
        raise Unsupported("needs CUDA")
    try:
        import flashinfer
    except ImportError as exc:
        raise Unsupported("flashinfer not installed") from exc
    pos, q, k = _flat_tokens(c)
    cache = _cache_cat(c)  # FlashInfer requires an fp32 cache

    def fn(q, k):
        flashinfer.apply_rope_with_cos_sin_cache_inplace(pos, q, k, c.head_dim, cache, is_neox=c.layout == "half")
        return q, k

    return Impl(fn, (q, k), inplace=True)


def _vllm(c: Case) -> Impl:
    if c.device.type != "cuda":
        raise Unsupported("needs CUDA")
    try:
        from vllm import _custom_ops as ops
    except ImportError as exc:
        raise Unsupported("vllm not installed") from exc
    pos, q, k = _flat_tokens(c)
    cache = _cache_cat(c, c.dtype)  # vLLM casts its cache to the model dtype

    def fn(q, k):
        ops.rotary_embedding(pos, q, k, c.head_dim, cache, c.layout == "half")
        return q, k

    return Impl(fn, (q, k), inplace=True)


#: name -> builder, in table order.
BUILDERS: dict[str, Callable[[Case], Impl]] = {
    "copy-floor": _copy,
    "clone-floor": _clone,
    "ropekit-reference": _ropekit("reference"),
    "ropekit-cpu": _ropekit("cpu"),
    "ropekit-cpu-inplace": _ropekit("cpu", inplace=True),
    "ropekit-cpu-torch": _ropekit("cpu", native=False),
    "ropekit-cpu-torch-inplace": _ropekit("cpu", inplace=True, native=False),
    "ropekit-triton": _ropekit("triton"),
    "ropekit-triton-inplace": _ropekit("triton", inplace=True),
    "hf-llama": _hf,
    "rotary-embedding-torch": _rotary_embedding_torch,
    "liger": _liger,
    "flash-attn": _flash_attn,
    "flashinfer": _flashinfer,
    "vllm": _vllm,
}
