"""Training-free context extension beyond frequency scaling: one frozen config per method, and its position maps.

Every method here keeps RoPE's frequencies and changes *which positions* a query and a key are rotated at,
per (query, key) pair; the attention is then a softmax over keys whose scores come from different
placements in different regions of the (query, key) plane. Each config says this twice, independently:

- :meth:`Extension.relative`: the relative position every causal pair ``(i, j)`` sees (the O(n^2) oracle,
  :func:`ropekit.extension.reference_attention`, rotates by exactly this);
- :meth:`Extension.parts`: the same thing as a few regions, each with one query placement and one key
  placement (what the chunked path, :func:`ropekit.extension.extended_attention`, computes and merges by
  log-sum-exp).

True positions are integers ``i`` (query) and ``j`` (key), ``d = i - j >= 0``:

======================  =====================================================================================
``self-extend``         ``d < W``: ``d``; beyond: ``i // G + W - W // G - j // G`` (Jin et al. 2024)
``dca``                 ``cl = chunk_size - local_size``; same chunk ``i // cl == j // cl``: ``d``; previous
                        chunk: ``min(i % cl + cl, chunk_size) - j % cl``; older: ``min(2 cl - 1, chunk_size)
                        - j % cl`` (An et al. 2024, as Qwen / vLLM's dual-chunk attention place them)
``rerope``              ``min(d, w)`` (Su 2023)
``leaky-rerope``        ``d < w``: ``d``; beyond: ``w + (d - w) / k``
``dynamic-yarn``        ``d`` under YaRN with ``factor = max(1, n / L0)``, ``n`` the current length
======================  =====================================================================================

>>> import torch
>>> se = SelfExtend(group_size=4, window=8)
>>> se.relative(torch.tensor([[20]]), torch.tensor([[0, 13, 19]])).tolist()
[[11.0, 7.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.scaling import YaRN
from ropekit.core.validation import check_choice, check_positive, check_positive_int

__all__ = [
    "EXTENSIONS", "DualChunk", "DynamicYaRN", "Extension", "LeakyReRoPE", "Part", "ReRoPE", "SelfExtend",
    "extension_from_name",
]

Mask = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (i (c, 1), j (1, m)) int64 -> bool (c, m)


@dataclass(frozen=True)
class Part:
    """One region of the (query, key) plane: where its queries and keys are rotated, and which pairs it owns."""

    q_at: torch.Tensor  # float64 (n_q,): the position each query is rotated at in this region
    k_at: torch.Tensor  # float64 (n_k,): the position each key is rotated at in this region
    mask: Mask  # True where a causal pair belongs to this region (the regions partition the causal pairs)


def _int(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {lo}, got {type(value).__name__} {value!r}.")
    if value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value}.")
    return value


@dataclass(frozen=True, kw_only=True)
class Extension:
    """Base of the extension configs; ``method`` is the registry / ``ropekit eval`` name."""

    method: ClassVar[str] = ""

    def check_context(self, context: int | None) -> None:
        """Raise if the parameters do not fit a model trained on ``context`` tokens (None: unknown, no check)."""

    def relative(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Float64 relative position seen by each causal pair (``i`` ``(n_q, 1)``, ``j`` ``(1, n_k)`` int64)."""
        raise NotImplementedError

    def parts(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> list[Part]:
        """The regions the chunked path computes (``q_pos`` ``(n_q,)``, ``k_pos`` ``(n_k,)`` int64)."""
        raise NotImplementedError

    def rope_at(self, cfg: RopeConfig, seq_len: int) -> RopeConfig:
        """The RoPE the attention runs at current length ``seq_len`` (the model's own, except dynamic YaRN)."""
        return cfg

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, **{k: getattr(self, k) for k in self.__dataclass_fields__}}


def _f(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float64)


def _near(w: int) -> Mask:
    return lambda i, j: (i - j) < w


def _far(w: int) -> Mask:
    return lambda i, j: (i - j) >= w


@dataclass(frozen=True, kw_only=True)
class SelfExtend(Extension):
    """Self-Extend (Jin et al. 2024, "LLM Maybe LongLM"): exact neighbours, floor-grouped positions beyond.

    ``compat="paper"``: the paper's two-attention merge, computed in one pass (the table above).

    ``compat="llama.cpp"``: what ``llama-cli --grp-attn-n G --grp-attn-w W`` computes. llama.cpp runs one
    ordinary attention and, before each evaluated batch, floor-divides the cached positions of every full
    ``W``-block behind the batch start by ``G`` and shifts the rest down. So a query in a batch that starts
    at true position ``n`` (``k = n // W`` blocks grouped) sees key ``j`` at distance ``i - j`` when
    ``j >= k W``, else ``i - k (W - W // G) - j // G``. The result depends on the batch schedule; here **one
    forward call is one llama.cpp batch** (its first query is the batch start): a prompt in one call gets
    no grouping, as in llama.cpp; feed it in ``-b``-sized calls with a cache to reproduce ``llama-cli -b``.
    llama.cpp asserts ``W % G == 0``, and so does this mode.

    >>> SelfExtend(group_size=4, window=1024).capacity(8192)   # distances the trained context covers
    29696
    >>> import torch
    >>> cpp = SelfExtend(group_size=4, window=8, compat="llama.cpp")
    >>> cpp.relative(torch.tensor([[20]]), torch.tensor([[0, 13, 19]])).tolist()   # a decode step at 20: k = 2
    [[8.0, 5.0, 1.0]]
    """

    method: ClassVar[str] = "self-extend"
    group_size: int  # G >= 1: positions beyond the window are floor-divided by G (G = 1: no change)
    window: int  # W >= 1: distances below W keep their exact relative position
    compat: str = "paper"  # "paper": Jin et al.'s merge; "llama.cpp": llama-cli's --grp-attn cache shifts

    def __post_init__(self) -> None:
        _int("group_size", self.group_size, 1)
        _int("window", self.window, 1)
        check_choice("compat", self.compat, ("paper", "llama.cpp"))
        if self.compat == "llama.cpp" and self.window % self.group_size:
            raise ValueError(
                f"compat='llama.cpp' needs window a multiple of group_size (llama.cpp asserts "
                f"--grp-attn-w % --grp-attn-n == 0), got window={self.window}, group_size={self.group_size}."
            )

    def check_context(self, context: int | None) -> None:
        if context is not None and self.window >= context:
            raise ValueError(f"window={self.window} must be below the trained context ({context} tokens).")

    def capacity(self, context: int) -> int:
        """The longest sequence whose largest grouped distance stays below ``context`` (``compat="paper"``)."""
        if self.compat != "paper":
            raise ValueError("capacity() is the paper's bound; under compat='llama.cpp' the largest distance "
                             "depends on the batch schedule (a query sees up to its batch's length exactly).")
        # the largest grouped distance, (n - 1) // G + shift, stays below context while n <= G * (context - shift)
        return self.group_size * (context - self._shift())

    def _shift(self) -> int:
        return self.window - self.window // self.group_size

    def _llama_cpp(self, q_pos: torch.Tensor) -> tuple[int, int]:
        """(first key position not grouped, how far queries moved down) for a batch starting at min(q_pos)."""
        k = int(q_pos.min()) // self.window if q_pos.numel() else 0  # blocks llama.cpp grouped before the batch
        return k * self.window, k * self._shift()

    def relative(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        g = self.group_size
        if self.compat == "llama.cpp":
            edge, down = self._llama_cpp(i)
            return torch.where(j >= edge, _f(i - j), _f(i - down - j // g))
        grouped = _f(i // g + self._shift() - j // g)
        return torch.where((i - j) < self.window, _f(i - j), grouped)

    def parts(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> list[Part]:
        g = self.group_size
        if self.compat == "llama.cpp":
            edge, down = self._llama_cpp(q_pos)
            return [Part(q_at=_f(q_pos), k_at=_f(k_pos), mask=lambda i, j: j >= edge),
                    Part(q_at=_f(q_pos - down), k_at=_f(k_pos // g), mask=lambda i, j: j < edge)]
        return [Part(q_at=_f(q_pos), k_at=_f(k_pos), mask=_near(self.window)),
                Part(q_at=_f(q_pos // g + self._shift()), k_at=_f(k_pos // g), mask=_far(self.window))]


@dataclass(frozen=True, kw_only=True)
class DualChunk(Extension):
    """Dual Chunk Attention (An et al. 2024, ChunkLlama; Qwen2.5-1M): intra / successive / inter chunk.

    Keys sit at ``j % cl`` with ``cl = chunk_size - local_size``; queries of the same chunk at ``i % cl``,
    of the next chunk at ``min(i % cl + cl, chunk_size)`` (exact distances for the first ``local_size``),
    of later chunks at ``min(2 cl - 1, chunk_size)``. No distance exceeds ``chunk_size``.
    """

    method: ClassVar[str] = "dca"
    chunk_size: int  # s: the largest distance any pair sees; at most the trained context
    local_size: int  # w: queries keep exact distances to the previous chunk's last w keys; 1 <= w < s

    def __post_init__(self) -> None:
        _int("chunk_size", self.chunk_size, 2)
        _int("local_size", self.local_size, 1)
        if self.local_size >= self.chunk_size:
            raise ValueError(f"local_size={self.local_size} must be below chunk_size={self.chunk_size}.")

    def check_context(self, context: int | None) -> None:
        if context is not None and self.chunk_size > context:
            raise ValueError(f"chunk_size={self.chunk_size} must be at most the trained context ({context} tokens).")

    @property
    def chunk_len(self) -> int:
        return self.chunk_size - self.local_size

    def relative(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        cl, s = self.chunk_len, self.chunk_size
        back = i // cl - j // cl
        succ = torch.clamp(i % cl + cl, max=s) - j % cl
        inter = min(2 * cl - 1, s) - j % cl
        return _f(torch.where(back == 0, i - j, torch.where(back == 1, succ, inter)))

    def parts(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> list[Part]:
        cl, s = self.chunk_len, self.chunk_size
        k_at = _f(k_pos % cl)
        inter = torch.full_like(q_pos, min(2 * cl - 1, s))
        return [
            Part(q_at=_f(q_pos % cl), k_at=k_at, mask=lambda i, j: i // cl == j // cl),
            Part(q_at=_f(torch.clamp(q_pos % cl + cl, max=s)), k_at=k_at, mask=lambda i, j: i // cl - j // cl == 1),
            Part(q_at=_f(inter), k_at=k_at, mask=lambda i, j: i // cl - j // cl >= 2),
        ]


@dataclass(frozen=True, kw_only=True)
class ReRoPE(Extension):
    """ReRoPE (Su 2023): relative positions clipped at ``window``; ``window >= n`` is plain RoPE."""

    method: ClassVar[str] = "rerope"
    window: int  # w >= 1: distances at or beyond w are seen as w

    def __post_init__(self) -> None:
        _int("window", self.window, 1)

    def check_context(self, context: int | None) -> None:
        if context is not None and self.window >= context:
            raise ValueError(f"window={self.window} must be below the trained context ({context} tokens).")

    def relative(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return _f(torch.clamp(i - j, max=self.window))

    def parts(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> list[Part]:
        w = self.window
        return [Part(q_at=_f(q_pos), k_at=_f(k_pos), mask=_near(w)),
                Part(q_at=torch.full_like(_f(q_pos), float(w)), k_at=torch.zeros_like(_f(k_pos)), mask=_far(w))]


@dataclass(frozen=True, kw_only=True)
class LeakyReRoPE(ReRoPE):
    """Leaky ReRoPE (Su 2023): exact below ``window``, then positions grow with slope ``1 / slope``."""

    method: ClassVar[str] = "leaky-rerope"
    slope: float  # k > 1: beyond the window a distance d is seen as w + (d - w) / k (k = 1 is plain RoPE)

    def __post_init__(self) -> None:
        super().__post_init__()
        k = check_positive("slope", self.slope)
        if k < 1:
            raise ValueError(f"slope must be >= 1 (positions beyond the window grow by 1/slope), got {self.slope}.")
        object.__setattr__(self, "slope", k)

    def relative(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        d, w = _f(i - j), float(self.window)
        return torch.where(d < w, d, w + (d - w) / self.slope)

    def parts(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> list[Part]:
        w, k = self.window, self.slope
        return [Part(q_at=_f(q_pos), k_at=_f(k_pos), mask=_near(w)),
                Part(q_at=_f(q_pos) / k + w * (1.0 - 1.0 / k), k_at=_f(k_pos) / k, mask=_far(w))]


@dataclass(frozen=True, kw_only=True)
class DynamicYaRN(Extension):
    """YaRN whose factor follows the current length: ``factor = max(1, n / L0)``, ``n`` = last position + 1.

    At ``n <= L0`` this is the model's own RoPE, bit for bit. With a KV cache every step re-rotates the
    cached keys (stored at the model's own RoPE) to the current factor, so the attention of the newest
    token equals that of a full forward at the same length; the cached keys' *values* and the earlier
    tokens' hidden states stay those computed at their time, as with any KV cache.
    """

    method: ClassVar[str] = "dynamic-yarn"
    original_max_position_embeddings: int  # L0: the trained context; the factor starts growing past it
    beta_fast: float = 32.0  # YaRN's beta_fast (see ropekit.YaRN)
    beta_slow: float = 1.0  # YaRN's beta_slow

    def __post_init__(self) -> None:
        check_positive_int("original_max_position_embeddings", self.original_max_position_embeddings)
        YaRN(factor=2.0, original_max_position_embeddings=self.original_max_position_embeddings,
             beta_fast=self.beta_fast, beta_slow=self.beta_slow)  # the same checks as a static YaRN

    def factor(self, seq_len: int) -> float:
        return max(1.0, seq_len / self.original_max_position_embeddings)

    def rope_at(self, cfg: RopeConfig, seq_len: int) -> RopeConfig:
        if cfg.scaling is not None:
            raise ValueError(
                f"dynamic-yarn replaces the model's RoPE frequencies, but this RoPE already scales with "
                f"{cfg.method!r}; use a model without RoPE scaling or a static ropekit.YaRN."
            )
        f = self.factor(seq_len)
        if f == 1.0:
            return cfg
        yarn = YaRN(factor=f, original_max_position_embeddings=self.original_max_position_embeddings,
                    beta_fast=self.beta_fast, beta_slow=self.beta_slow)
        return cfg.replace(scaling=yarn)

    def relative(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return _f(i - j)

    def parts(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> list[Part]:
        return [Part(q_at=_f(q_pos), k_at=_f(k_pos), mask=lambda i, j: torch.ones_like(i - j, dtype=torch.bool))]


#: method name -> config class (the names ``ropekit eval --methods`` and the registry use)
EXTENSIONS: dict[str, type[Extension]] = {
    c.method: c for c in (SelfExtend, DualChunk, ReRoPE, LeakyReRoPE, DynamicYaRN)
}


def extension_from_name(name: str, **params: Any) -> Extension:
    """The config of method ``name`` (one of :data:`EXTENSIONS`) with ``params``; unknown names raise.

    >>> extension_from_name("rerope", window=512)
    ReRoPE(window=512)
    """
    check_choice("method", name, EXTENSIONS)
    return EXTENSIONS[name](**params)
