"""A small pre-LN decoder-only LM whose position encoding is a plug-in (see :mod:`.encodings`).

Tensors: token ids ``(batch, seqlen)``; hidden ``(batch, seqlen, d_model)``; q ``(batch, seqlen,
n_heads, head_dim)``, k/v ``(batch, seqlen, n_kv_heads, head_dim)`` (GQA when ``n_kv_heads < n_heads``).
No dropout: training is deterministic, which the DDP equality test relies on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ropekit.core.validation import check_choice, check_positive_int
from ropekit.study.encodings import ENCODINGS, PositionEncoding, make_encoding

__all__ = ["DecoderLM", "ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture + position encoding. ``max_len`` only sizes the learned table (rows >= ``train_len``
    stay untrained). ``rope_fraction`` < 1 is p-RoPE. ``encoding="rope-nope4"`` drops RoPE from every 4th
    layer (see :class:`ropekit.study.encodings.RotaryNoPEHybrid`; needs ``n_layers >= 2``)."""

    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_ff: int | None = None
    encoding: str = "rope"
    train_len: int = 128
    max_len: int = 1024
    rope_base: float = 10000.0
    rope_fraction: float = 1.0
    rope_layout: str = "half"
    rope_backend: str = "auto"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "train_len", "max_len"):
            check_positive_int(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}.")
        if self.kv_heads < 1 or self.n_heads % self.kv_heads:
            raise ValueError(f"n_kv_heads={self.n_kv_heads} must be >= 1 and divide n_heads={self.n_heads}.")
        check_choice("encoding", self.encoding, ENCODINGS)
        if self.encoding == "rope-nope4" and self.n_layers < 2:
            raise ValueError(f"n_layers={self.n_layers}: encoding='rope-nope4' needs n_layers >= 2 (with 1 layer "
                             "there is no RoPE layer left).")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, enc: PositionEncoding) -> None:
        super().__init__()
        self.cfg, self.enc = cfg, [enc]  # a list, so the shared encoding is not registered once per layer
        hd = cfg.head_dim
        self.wq = nn.Linear(cfg.d_model, cfg.n_heads * hd, bias=False)
        self.wkv = nn.Linear(cfg.d_model, 2 * cfg.kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.n_heads * hd, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        c, enc = self.cfg, self.enc[0]
        q = self.wq(x).view(b, t, c.n_heads, c.head_dim)
        k, v = self.wkv(x).view(b, t, 2, c.kv_heads, c.head_dim).unbind(2)
        extended = enc.attend(q, k, v)  # a training-free extension (evaluation only), else None
        if extended is not None:
            return self.wo(extended.reshape(b, t, -1))
        q, k = enc.rotate(q, k)
        bias = enc.attention_bias(t, x.device, q.dtype)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (batch, heads, seqlen, head_dim) for SDPA
        if c.kv_heads != c.n_heads:
            rep = c.n_heads // c.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=bias is None)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, enc: PositionEncoding) -> None:
        super().__init__()
        d_ff = cfg.d_ff or 4 * cfg.d_model
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg, enc)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, d_ff), nn.GELU(), nn.Linear(d_ff, cfg.d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class DecoderLM(nn.Module):
    """Pre-LN decoder LM with tied input/output embeddings.

    >>> m = DecoderLM(ModelConfig(d_model=32, n_layers=1, n_heads=2, encoding="alibi"))
    >>> m(torch.zeros(2, 5, dtype=torch.long)).shape
    torch.Size([2, 5, 256])
    """

    def __init__(self, cfg: ModelConfig, *, rope_cfg: object = None) -> None:
        super().__init__()
        self.cfg = cfg
        # rope_cfg: any ropekit.RopeConfig for programmatic use (checkpoints rebuild from cfg only)
        self.encoding = make_encoding(
            cfg.encoding, d_model=cfg.d_model, n_heads=cfg.n_heads, head_dim=cfg.head_dim,
            train_len=cfg.train_len, max_len=cfg.max_len, rope_base=cfg.rope_base,
            rope_fraction=cfg.rope_fraction, rope_layout=cfg.rope_layout, rope_backend=cfg.rope_backend,
            rope_cfg=rope_cfg,
        )
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        # each layer gets the encoding that acts in it (the same object in every layer, except in a hybrid's
        # NoPE layers); scaling self.encoding therefore reaches every rotating layer
        n = cfg.n_layers
        self.blocks = nn.ModuleList(Block(cfg, self.encoding.layer_encoding(i, n)) for i in range(n))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self._init()

    def _init(self) -> None:
        # fairseq / Vaswani et al.: token embeddings N(0, 1/d) multiplied by sqrt(d) on input (unit scale),
        # so a sinusoidal table of amplitude 1 and a learned one of std 1/sqrt(d) sit at their usual ratio.
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif name == "embed.weight":
                nn.init.normal_(p, std=self.cfg.d_model ** -0.5)
            elif p.dim() == 2 and not name.startswith("encoding."):
                std = 0.02 / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("wo.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, seqlen, vocab)`` for token ids ``idx`` ``(batch, seqlen)``."""
        x = self.encoding.add_to_embeddings(self.embed(idx) * math.sqrt(self.cfg.d_model))
        for blk in self.blocks:
            x = blk(x)
        return F.linear(self.ln_f(x), self.embed.weight)

    def token_nll(self, idx: torch.Tensor) -> torch.Tensor:
        """Per-token NLL (nats) ``(batch, seqlen - 1)`` of ``idx[:, 1:]`` given ``idx[:, :-1]``."""
        logits = self(idx[:, :-1])
        return F.cross_entropy(logits.float().transpose(1, 2), idx[:, 1:], reduction="none")
