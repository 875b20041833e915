"""A KV cache that keeps its keys consistent when the effective RoPE frequencies change.

Dynamic NTK grows the base with the sequence and LongRoPE switches from short to long factors once the
sequence passes L0 (HF evaluates both at ``seq_len = max(position) + 1``). A plain cache keeps keys rotated
under the old frequencies (transformers#25104, #33129); HF's Phi-3 generation throws the cache away
instead. :class:`RerotatingKVCache` re-rotates the cached keys with :func:`~ropekit.interop.rerotate`
(one extra rotation per cached key, no recompute) whenever the frequencies for the new length differ.

Exactness: re-rotation makes every cached key equal to "the cached pre-RoPE key rotated under the new
frequencies". For the first attention layer that *is* a full recompute. Deeper layers' cached keys were
computed from hidden states that earlier layers produced under the old frequencies, which a full
recompute would also change; re-rotation removes the rotation mismatch, not that drift (tested on a
tiny HF Phi-3: exact with one layer, several times closer than the stale cache with two).
"""

from __future__ import annotations

import torch

from ropekit.core.config import RopeConfig
from ropekit.interop.rerotate import rerotate

__all__ = ["HFCacheRerotator", "RerotatingKVCache"]


class RerotatingKVCache:
    """Per-layer key/value cache for ``(batch, seqlen, kv_heads, head_dim)`` tensors.

    Per forward step: ``seq_len = cache.prepare(total_len)`` once (re-rotates every layer's keys if the
    frequencies for ``total_len`` differ from those the cache holds), rotate the new q/k with
    ``cfg.cos_sin(positions, seq_len=seq_len)``, then ``k_all, v_all = cache.update(layer, k, v)``.

    >>> import torch, ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=8, max_position_embeddings=32,
    ...     scaling=ropekit.DynamicNTK(factor=2.0, original_max_position_embeddings=16))
    >>> cache = RerotatingKVCache(cfg)
    >>> cache.prepare(20), cache.length
    (20, 0)
    """

    def __init__(self, cfg: RopeConfig) -> None:
        if not isinstance(cfg, RopeConfig):
            raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
        self.config = cfg
        self.keys: list[torch.Tensor | None] = []
        self.values: list[torch.Tensor | None] = []
        self._seq_len: int | None = None  # the length the cached keys' frequencies follow
        self.rerotations = 0  # how many times the cache was re-rotated (for tests and logging)

    @property
    def length(self) -> int:
        """Tokens currently cached (0 when empty)."""
        k = next((k for k in self.keys if k is not None), None)
        return 0 if k is None else k.shape[1]

    def _freq_seq_len(self, total_len: int) -> int | None:
        sc = self.config.scaling
        return total_len if sc is not None and sc.depends_on_seq_len else None

    def prepare(self, total_len: int) -> int:
        """Get ready for a step that ends at ``total_len`` tokens; returns the ``seq_len`` to rotate new
        tokens with. Re-rotates cached keys in place when their frequencies are stale."""
        if isinstance(total_len, bool) or not isinstance(total_len, int) or total_len < max(1, self.length):
            raise ValueError(f"total_len must be an int >= max(1, cached length {self.length}), got {total_len!r}.")
        new = self._freq_seq_len(total_len)
        if self.length and new is not None:
            old = self._seq_len
            if not torch.equal(self.config.inv_freq(old), self.config.inv_freq(new)):
                pos = torch.arange(self.length)
                self.keys = [
                    None if k is None else rerotate(k, pos.to(k.device), old=self.config, new=self.config,
                                                    old_seq_len=old, new_seq_len=new)
                    for k in self.keys
                ]
                self.rerotations += 1
        self._seq_len = new
        return total_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append rotated keys ``k`` and values ``v`` of one layer; returns the layer's full keys/values."""
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise ValueError(f"layer must be an int >= 0, got {layer!r}.")
        if k.dim() != 4 or v.shape[:2] != k.shape[:2]:
            raise ValueError("k and v must be (batch, seqlen, kv_heads, head_dim) with matching batch and seqlen.")
        while len(self.keys) <= layer:
            self.keys.append(None)
            self.values.append(None)
        old_k, old_v = self.keys[layer], self.values[layer]
        self.keys[layer] = k if old_k is None else torch.cat((old_k, k), dim=1)
        self.values[layer] = v if old_v is None else torch.cat((old_v, v), dim=1)
        return self.keys[layer], self.values[layer]  # type: ignore[return-value]


class HFCacheRerotator:
    """Keep a transformers ``Cache`` (e.g. ``DynamicCache``) consistent across frequency changes.

    Call ``rerotator.prepare(cache, total_len)`` before each forward that ends at ``total_len`` tokens:
    when ``cfg``'s frequencies for ``total_len`` differ from those the cached keys were rotated with
    (HF evaluates dynamic NTK / LongRoPE at ``max(position_ids) + 1``), every layer's keys
    ``(batch, kv_heads, seqlen, head_dim)`` are re-rotated in place, so decoding past LongRoPE's switch gives
    the logits of a full recompute instead of HF's stale cache. ``cfg`` must describe the model's RoPE
    (e.g. ``ropekit.RopeConfig.from_hf(model.config)``).
    """

    def __init__(self, cfg: RopeConfig) -> None:
        if not isinstance(cfg, RopeConfig):
            raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
        self.config = cfg
        self._seq_len: int | None = None
        self.rerotations = 0

    def prepare(self, cache: object, total_len: int) -> None:
        """Re-rotate ``cache``'s keys for a step ending at ``total_len`` tokens, if their frequencies changed."""
        sc = self.config.scaling
        new = total_len if sc is not None and sc.depends_on_seq_len else None
        layers = getattr(cache, "layers", None)
        if layers is None:
            raise TypeError("cache must be a transformers Cache with .layers (e.g. DynamicCache).")
        cached = [layer for layer in layers if getattr(layer, "keys", None) is not None and layer.keys.numel()]
        if cached and new is not None:
            old = self._seq_len if self._seq_len is not None else cached[0].keys.shape[-2]
            if not torch.equal(self.config.inv_freq(old), self.config.inv_freq(new)):
                for layer in cached:
                    k = layer.keys.transpose(1, 2)  # -> (batch, seqlen, kv_heads, head_dim)
                    pos = torch.arange(k.shape[1], device=k.device)
                    k = rerotate(k, pos, old=self.config, new=self.config, old_seq_len=old, new_seq_len=new)
                    layer.keys = k.transpose(1, 2).contiguous()
                self.rerotations += 1
        self._seq_len = new
