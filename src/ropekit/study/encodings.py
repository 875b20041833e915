"""Pluggable position encodings for the study model.

Each encoding acts at up to three places, and the model calls all three:

- ``add_to_embeddings(x)``: absolute encodings add a vector per position; ``x`` is ``(batch, seqlen, d_model)``.
- ``rotate(q, k)``: rotary encodings turn q ``(batch, seqlen, q_heads, head_dim)`` and
  k ``(batch, seqlen, kv_heads, head_dim)``.
- ``attention_bias(seqlen, device, dtype)``: an additive ``(1, q_heads, seqlen, seqlen)`` mask that already
  contains the causal ``-inf`` (ALiBi), or ``None`` for plain causal attention. (4-D on purpose: torch's
  CPU SDPA drops to its slow math path for a 3-D mask, ~5x slower.)

``attend(q, k, v)`` (shapes as for ``rotate``, v like k) lets an encoding compute the whole attention of a layer;
``None`` (every encoding, unless a RoPE model has a training-free extension set with
:meth:`Rotary.set_extension`) means the model's plain SDPA path.

The model asks ``layer_encoding(layer, n_layers)`` which encoding acts inside each attention layer: every
encoding answers "itself" in every layer, except the hybrid ``rope-nope4`` (:class:`RotaryNoPEHybrid`), which
answers a :class:`NoPE` in its NoPE layers, so those layers neither rotate nor bias.

RoPE goes through ropekit's public API only: :class:`ropekit.RopeConfig` for frequencies,
:func:`ropekit.scaling_from_factor` for PI / NTK / dynamic NTK / YaRN at evaluation time,
``RopeConfig.cos_sin_table`` for the precise table and :func:`ropekit.functional.apply_rotary` for the rotation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ropekit.core.frequencies import kept_pairs
from ropekit.core.validation import check_choice, check_positive, check_positive_int

__all__ = [
    "ENCODINGS",
    "EVAL_SCALINGS",
    "ALiBi",
    "Learned",
    "NoPE",
    "PositionEncoding",
    "Rotary",
    "RotaryNoPEHybrid",
    "Sinusoidal",
    "alibi_slopes",
    "make_encoding",
    "sinusoidal_table",
]

ENCODINGS: tuple[str, ...] = ("nope", "learned", "sinusoidal", "alibi", "rope", "rope-nope4")
#: evaluation-time RoPE scalings, names as in :func:`ropekit.scaling_from_factor` ("linear" = PI).
EVAL_SCALINGS: tuple[str, ...] = ("none", "linear", "ntk", "dynamic", "yarn")


class PositionEncoding(nn.Module):
    """No-op base: this is exactly NoPE (causal attention alone carries order)."""

    name = "nope"

    def add_to_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def attention_bias(self, seqlen: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        return None

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor | None:
        """The layer's attention output ``(batch, seqlen, q_heads, head_dim)``, or ``None`` for the plain path."""
        return None

    def layer_encoding(self, layer: int, n_layers: int) -> PositionEncoding:
        """The encoding that acts inside attention layer ``layer`` (0-based) of ``n_layers``: by default this one."""
        return self


class NoPE(PositionEncoding):
    """No position information (Haviv et al. 2022; Kazemnejad et al. 2023)."""


class Learned(PositionEncoding):
    """Learned absolute positions: a ``(max_len, d_model)`` table added to the token embeddings.

    Rows at positions never seen in training receive no gradient and keep their initialisation,
    which is what running a learned table past its trained length means.
    """

    name = "learned"

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        self.max_len = check_positive_int("max_len", max_len)
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=d_model**-0.5)  # fairseq's LearnedPositionalEmbedding init

    def add_to_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.max_len:
            raise ValueError(f"seqlen={x.shape[1]} exceeds the learned table's max_len={self.max_len}.")
        return x + self.table.weight[: x.shape[1]]


def sinusoidal_table(length: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """Vaswani et al. (2017): PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d)).

    Formed in float64, returned as float32 ``(length, d_model)``.

    >>> sinusoidal_table(3, 4)[1, :2]
    tensor([0.8415, 0.5403])
    """
    if d_model % 2:
        raise ValueError(f"d_model must be even for sinusoidal positions, got {d_model}.")
    inv = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    ang = torch.arange(length, dtype=torch.float64)[:, None] * inv
    return torch.stack((ang.sin(), ang.cos()), dim=-1).flatten(-2).float()


class Sinusoidal(PositionEncoding):
    """Fixed sinusoidal absolute positions added to the token embeddings (scaled by sqrt(d_model))."""

    name = "sinusoidal"

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self._cache: torch.Tensor | None = None

    def add_to_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        if self._cache is None or self._cache.shape[0] < n or self._cache.device != x.device:
            self._cache = sinusoidal_table(max(n, 1), self.d_model).to(x.device)
        return x + self._cache[:n].to(x.dtype)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Press et al. (2022) head slopes, float64 ``(n_heads,)``.

    A power of two n: the geometric sequence starting at 2^(-8/n) with that same ratio
    (8 heads: 1/2, 1/4, ..., 1/256). Otherwise, as in the authors' code: the slopes of the closest
    smaller power of two, then every other slope of twice that power.

    >>> alibi_slopes(8)[[0, -1]].tolist()
    [0.5, 0.00390625]
    """
    check_positive_int("n_heads", n_heads)

    def pow2(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if n_heads & (n_heads - 1) == 0:
        vals = pow2(n_heads)
    else:
        closest = 2 ** math.floor(math.log2(n_heads))
        vals = pow2(closest) + pow2(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(vals, dtype=torch.float64)


class ALiBi(PositionEncoding):
    """Attention with linear biases: logit(i, j) += -m_h * (i - j) for j <= i."""

    name = "alibi"

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_heads).float(), persistent=False)
        self._cache: dict[tuple[int, str, torch.dtype], torch.Tensor] = {}

    def attention_bias(self, seqlen: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (seqlen, str(device), dtype)
        if key not in self._cache:
            pos = torch.arange(seqlen, device=device)
            dist = (pos[None, :] - pos[:, None]).to(torch.float32)  # j - i, <= 0 on and below the diagonal
            bias = self.slopes.to(device)[:, None, None] * dist
            bias = bias.masked_fill(dist > 0, float("-inf"))
            self._cache = {key: bias.to(dtype)[None]}  # keep one length: evaluation walks lengths in order
        return self._cache[key]


class Rotary(PositionEncoding):
    """RoPE from a :class:`ropekit.RopeConfig`, optionally p-RoPE, optionally scaled at evaluation.

    ``cfg`` takes any RopeConfig (partial rotary, interleaved layout, a training-time scaling, ...);
    by default one is built from ``head_dim``, ``base``, ``layout`` and ``train_len``.

    ``fraction`` (p-RoPE, Barbero et al. 2025) keeps the fraction ``p`` of the *highest* frequencies of
    the config's full set; the channels of the dropped lowest frequencies are left unrotated (p=1: RoPE).
    ``set_scaling(method, factor)`` switches to ``ropekit.scaling_from_factor(method, factor,
    original_max_position_embeddings=train_len)``; ``"none"`` restores plain RoPE. ``"dynamic"``
    recomputes the frequencies from each forward's sequence length. ``set_extension(method)`` switches to a
    training-free extension from :mod:`ropekit.extension` (Self-Extend, DCA, ReRoPE, ...): the layer's whole
    attention then runs through :func:`ropekit.extension.extended_attention` on the raw q/k.
    """

    name = "rope"

    def __init__(
        self,
        head_dim: int,
        train_len: int,
        *,
        base: float = 10000.0,
        layout: str = "half",
        fraction: float = 1.0,
        backend: str = "auto",
        cfg: Any = None,
    ) -> None:
        super().__init__()
        import ropekit

        if not 0 < fraction <= 1:
            raise ValueError(f"fraction (p-RoPE p) must be in (0, 1], got {fraction!r}.")
        if cfg is None:
            cfg = ropekit.RopeConfig(
                head_dim=head_dim, base=check_positive("base", base), layout=layout, max_position_embeddings=train_len
            )
        elif not isinstance(cfg, ropekit.RopeConfig) or cfg.head_dim != head_dim:
            raise ValueError(f"cfg must be a ropekit.RopeConfig with head_dim={head_dim}, got {cfg!r}.")
        self.base_config = cfg
        self.train_len = train_len
        half = self.base_config.rotary_dim // 2
        self.n_keep = max(1, kept_pairs(fraction, half))
        self.fraction = fraction
        self.backend = backend
        self.config = self.base_config
        self.scaling_name = "none"
        self.extension: Any = None  # a ropekit.extension config while one is set (see set_extension)
        self._cache: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def set_extension(self, method: Any) -> None:
        """Run attention under ``method`` (a :mod:`ropekit.extension` config), or plain RoPE again for ``None``.

        Refused for p-RoPE (its dropped frequencies are not a RopeConfig the extension can rotate with) and
        while an eval-time scaling is set (an extension keeps the model's own frequencies).
        """
        if method is not None:
            from ropekit.extension import Extension

            if not isinstance(method, Extension):
                raise TypeError(f"method must be a ropekit.extension config or None, got {type(method).__name__}.")
            if self.n_keep != self.base_config.rotary_dim // 2:
                raise ValueError(f"extensions need full RoPE; this is p-RoPE (fraction={self.fraction}).")
            if self.scaling_name != "none":
                raise ValueError(f"set_scaling('none') first: scaling {self.scaling_name!r} is set.")
            method.check_context(self.train_len)
        self.extension = method

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor | None:
        if self.extension is None:
            return None
        from ropekit.extension import extended_attention

        out = extended_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.extension,
                                 self.base_config)
        return out.transpose(1, 2)

    def set_scaling(self, method: str, factor: float = 1.0) -> None:
        import ropekit

        check_choice("method", method, EVAL_SCALINGS)
        if self.extension is not None and method != "none":
            raise ValueError(f"set_extension(None) first: extension {self.extension.method!r} is set.")
        scaling = None
        if method != "none":
            scaling = ropekit.scaling_from_factor(method, factor, original_max_position_embeddings=self.train_len)
        # an eval-time scaling replaces the config's own (for the default config that is "no scaling")
        self.config = self.base_config.replace(scaling=scaling) if method != "none" else self.base_config
        self.scaling_name = method if scaling is not None else "none"
        self._cache = {}

    def tables(self, seqlen: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(seqlen, n_keep)`` float32 cos and sin (attention factor applied).

        Columns are pairs from the highest frequency down, so p-RoPE is the first ``n_keep`` columns of the
        config's table (float64 angles, formed by ropekit; ``seq_len`` feeds dynamic NTK).
        """
        key = (seqlen, str(device), self.scaling_name)
        if key not in self._cache:
            cos, sin = self.config.cos_sin_table(seqlen, seq_len=seqlen, device=torch.device("cpu"))
            keep = slice(0, self.n_keep)
            self._cache = {key: (cos[:, keep].contiguous().to(device), sin[:, keep].contiguous().to(device))}
        return self._cache[key]

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from ropekit.functional import apply_rotary

        cos, sin = self.tables(q.shape[1], q.device)
        q2, k2 = apply_rotary(q, k, cos, sin, layout=self.config.layout, backend=self.backend)
        assert k2 is not None
        return q2, k2


class RotaryNoPEHybrid(Rotary):
    """RoPE in most layers, no position encoding in every ``period``-th layer (``"rope-nope4"``: period 4).

    The NoPE layers are those with ``(layer + 1) % period == 0``, SmolLM3's and Llama-4's convention
    (``no_rope_layers`` in their Hugging Face configs): layers 3, 7, 11, ... for period 4. A model with fewer
    than ``period`` layers (but at least 2) has one NoPE layer, its last one: the last layer of its single,
    partial group. One layer would leave no RoPE layer at all and is refused. Every RoPE layer shares this
    module, so :meth:`Rotary.set_scaling` (PI / NTK / dynamic NTK / YaRN) reaches all of them at once.

    >>> RotaryNoPEHybrid(16, 32).nope_layers(8), RotaryNoPEHybrid(16, 32).nope_layers(3)
    ((3, 7), (2,))
    """

    name = "rope-nope4"

    def __init__(self, head_dim: int, train_len: int, *, period: int = 4, **rotary: Any) -> None:
        if isinstance(period, bool) or not isinstance(period, int) or period < 2:
            raise ValueError(f"period must be an int >= 2 (1 would make every layer NoPE), got {period!r}.")
        super().__init__(head_dim, train_len, **rotary)
        self.period = period
        self.name = f"rope-nope{period}"
        self.nope = NoPE()  # no parameters or buffers: the state dict is RoPE's

    def nope_layers(self, n_layers: int) -> tuple[int, ...]:
        """The 0-based indices of the layers without position encoding."""
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 2:
            raise ValueError(f"n_layers={n_layers!r}: the {self.name} hybrid needs n_layers >= 2 (one RoPE and one "
                             "NoPE layer at least).")
        every = tuple(i for i in range(n_layers) if (i + 1) % self.period == 0)
        return every or (n_layers - 1,)

    def layer_encoding(self, layer: int, n_layers: int) -> PositionEncoding:
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer={layer} must be in [0, n_layers={n_layers}).")
        return self.nope if layer in self.nope_layers(n_layers) else self


def _rotary(cls: type[Rotary]) -> Callable[..., PositionEncoding]:
    def build(*, head_dim: int, train_len: int, rope_base: float, rope_fraction: float, rope_layout: str,
              rope_backend: str, rope_cfg: Any, **_: Any) -> PositionEncoding:
        return cls(head_dim, train_len, base=rope_base, layout=rope_layout, fraction=rope_fraction,
                   backend=rope_backend, cfg=rope_cfg)

    return build


#: name -> builder taking make_encoding's keyword arguments (each uses the ones it needs)
_BUILDERS: dict[str, Callable[..., PositionEncoding]] = {
    "nope": lambda **_: NoPE(),
    "learned": lambda *, d_model, max_len, **_: Learned(d_model, max_len),
    "sinusoidal": lambda *, d_model, **_: Sinusoidal(d_model),
    "alibi": lambda *, n_heads, **_: ALiBi(n_heads),
    "rope": _rotary(Rotary),
    "rope-nope4": _rotary(RotaryNoPEHybrid),
}


def make_encoding(name: str, *, d_model: int, n_heads: int, head_dim: int, train_len: int, max_len: int,
                  rope_base: float = 10000.0, rope_fraction: float = 1.0, rope_layout: str = "half",
                  rope_backend: str = "auto", rope_cfg: Any = None) -> PositionEncoding:
    """Build the encoding called ``name`` (one of :data:`ENCODINGS`); ``rope_cfg`` overrides RoPE's config.

    >>> make_encoding("rope-nope4", d_model=32, n_heads=2, head_dim=16, train_len=16, max_len=64).name
    'rope-nope4'
    """
    check_choice("encoding", name, ENCODINGS)
    return _BUILDERS[name](d_model=d_model, n_heads=n_heads, head_dim=head_dim, train_len=train_len,
                           max_len=max_len, rope_base=rope_base, rope_fraction=rope_fraction,
                           rope_layout=rope_layout, rope_backend=rope_backend, rope_cfg=rope_cfg)
