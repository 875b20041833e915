"""``RopeConfig``: one typed, validated description of a model's RoPE."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ropekit.core.frequencies import compute_frequencies
from ropekit.core.reference import LAYOUTS, Layout
from ropekit.core.scaling import LongRoPE, Proportional, Scaling
from ropekit.core.tables import cos_sin, cos_sin_table
from ropekit.core.validation import check_choice, check_positive, check_positive_int, check_rotary_dim

__all__ = ["RopeConfig"]


@dataclass(frozen=True, kw_only=True)
class RopeConfig:
    """A model's rotary embedding: dims, base, pair layout and scaling.

    >>> import ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=128, base=500_000.0,
    ...                          scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=8192))
    >>> cfg.inv_freq().shape, cfg.inv_freq().dtype
    (torch.Size([64]), torch.float64)
    >>> round(cfg.attention_factor, 4)
    1.1386
    """

    head_dim: int  # channels per attention head
    base: float = 10000.0  # theta; frequencies are base ** (-2i / rotary_dim)
    layout: Layout = "half"  # "half" = NeoX/HF pairs i <-> i + d/2; "interleaved" = GPT-J pairs 2i <-> 2i+1
    rotary_dim: int | None = None  # rotated leading channels; None -> int(head_dim * partial_rotary_factor)
    partial_rotary_factor: float | None = None  # fraction of head_dim that rotates; resolved from rotary_dim
    max_position_embeddings: int | None = None  # the model's advertised context (informational, for interop)
    scaling: Scaling | None = None  # one of Linear, NTK, DynamicNTK, YaRN, LongRoPE, Llama3, Proportional

    def __post_init__(self) -> None:
        check_positive_int("head_dim", self.head_dim)
        base = check_positive("base", self.base)
        if base <= 1:
            raise ValueError(f"base must be > 1 (frequencies must decay with the pair index), got {self.base}.")
        object.__setattr__(self, "base", base)
        check_choice("layout", self.layout, LAYOUTS)
        if self.scaling is not None and not isinstance(self.scaling, Scaling):
            raise TypeError(
                f"scaling must be None or a ropekit scaling config (Linear, NTK, DynamicNTK, YaRN, LongRoPE, "
                f"Llama3, Proportional), got {type(self.scaling).__name__}."
            )
        if self.max_position_embeddings is not None:
            check_positive_int("max_position_embeddings", self.max_position_embeddings)
        rotary_dim = self._resolve_rotary_dim()
        object.__setattr__(self, "rotary_dim", rotary_dim)
        object.__setattr__(self, "partial_rotary_factor", self._resolve_partial())
        pairs = rotary_dim // 2
        if isinstance(self.scaling, LongRoPE) and len(self.scaling.short_factor) != pairs:
            raise ValueError(
                f"LongRoPE short_factor/long_factor must have rotary_dim // 2 = {pairs} entries, "
                f"got {len(self.scaling.short_factor)}."
            )

    def _resolve_rotary_dim(self) -> int:
        if isinstance(self.scaling, Proportional):
            # proportional rotates the whole head (unused pairs at frequency 0); its fraction lives in the scaling
            if self.rotary_dim not in (None, self.head_dim) or self.partial_rotary_factor not in (None, 1.0):
                raise ValueError(
                    "with Proportional scaling, set Proportional(partial_rotary_factor=...) and leave rotary_dim / "
                    "partial_rotary_factor unset (the whole head rotates, unused pairs at frequency 0)."
                )
            return check_rotary_dim(self.head_dim, self.head_dim)
        prf = self.partial_rotary_factor
        if prf is not None:
            check_positive("partial_rotary_factor", prf)
            if prf > 1:
                raise ValueError(f"partial_rotary_factor must be in (0, 1], got {prf}.")
        if self.rotary_dim is None:
            rd = int(self.head_dim * (1.0 if prf is None else prf))  # HF's truncation
        else:
            if isinstance(self.rotary_dim, bool) or not isinstance(self.rotary_dim, int):
                raise TypeError(f"rotary_dim must be an int, got {type(self.rotary_dim).__name__}.")
            rd = self.rotary_dim
            # a derived fraction (rd / head_dim) may not survive int() exactly, hence the tolerance
            if prf is not None and int(self.head_dim * prf) != rd and abs(self.head_dim * prf - rd) > 1e-9:
                raise ValueError(
                    f"rotary_dim={rd} and partial_rotary_factor={prf} disagree "
                    f"(head_dim * factor = {self.head_dim * prf}); pass one of them."
                )
        return check_rotary_dim(rd, self.head_dim)

    def _resolve_partial(self) -> float:
        if isinstance(self.scaling, Proportional):
            return 1.0
        if self.partial_rotary_factor is not None:
            return float(self.partial_rotary_factor)
        return self.rotary_dim / self.head_dim  # type: ignore[operator]

    # -- derived ---------------------------------------------------------------------------------------
    @property
    def method(self) -> str:
        """Registry name: ``"default"`` or the scaling's method."""
        return "default" if self.scaling is None else self.scaling.method

    @property
    def original_max_position_embeddings(self) -> int | None:
        """The trained context the scaling refers to (else ``max_position_embeddings``)."""
        ctx = None if self.scaling is None else self.scaling.context
        return ctx if ctx is not None else self.max_position_embeddings

    def frequencies(self, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
        """``(inv_freq, attention_factor)`` from the registry in one call; ``seq_len`` as in :meth:`inv_freq`."""
        return compute_frequencies(
            self.method, self.scaling, rotary_dim=self.rotary_dim, base=self.base, seq_len=seq_len  # type: ignore[arg-type]
        )

    def inv_freq(self, seq_len: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
        """Float64 inverse frequencies ``(rotary_dim // 2,)``; ``seq_len`` matters for dynamic NTK / LongRoPE."""
        inv = self.frequencies(seq_len)[0]
        return inv if device is None else inv.to(device)

    @property
    def attention_factor(self) -> float:
        """Multiplies cos and sin (YaRN mscale, LongRoPE factor); 1.0 for other methods."""
        return self.frequencies()[1]

    def cos_sin_table(
        self, length: int, seq_len: int | None = None, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 ``(length, rotary_dim // 2)`` cos/sin tables, attention factor applied."""
        inv, attn = self.frequencies(seq_len)
        return cos_sin_table(inv, length, attn, device)

    def cos_sin(self, positions: torch.Tensor, seq_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 cos/sin gathered at integer ``positions``: shape ``positions.shape + (rotary_dim // 2,)``."""
        inv, attn = self.frequencies(seq_len)
        return cos_sin(inv, positions, attn)

    def replace(self, **changes: Any) -> RopeConfig:
        """A copy with ``changes`` applied and validated (rotary_dim re-derived from the fraction unless given)."""
        if "rotary_dim" in changes and "partial_rotary_factor" not in changes:
            changes["partial_rotary_factor"] = None  # the new width defines the fraction
        elif "rotary_dim" not in changes and changes.keys() & {"head_dim", "partial_rotary_factor"}:
            changes["rotary_dim"] = None  # re-derive the width from the fraction
        return dataclasses.replace(self, **changes)

    # -- dialects: thin delegates to ropekit.interop (imported lazily: gguf/transformers are optional) ------
    @classmethod
    def from_hf(cls, config: Any, *, layer_type: str | None = None) -> RopeConfig:
        """Read an HF config (``PretrainedConfig`` or a config.json dict): ``rope_parameters`` or legacy
        ``rope_scaling``/``rope_theta``. See :func:`ropekit.interop.hf.from_hf`."""
        from ropekit.interop.hf import from_hf

        return from_hf(config, layer_type=layer_type)

    @classmethod
    def from_gguf(cls, path: Any, **kwargs: Any) -> RopeConfig:
        """Read GGUF metadata/tensors. See :func:`ropekit.interop.gguf.from_gguf`."""
        from ropekit.interop.gguf import from_gguf

        return from_gguf(path, **kwargs)

    @classmethod
    def from_llama_cpp_args(cls, args: Any, **kwargs: Any) -> RopeConfig:
        """Read llama.cpp CLI flags. See :func:`ropekit.interop.llama_cpp.from_llama_cpp_args`."""
        from ropekit.interop.llama_cpp import from_llama_cpp_args

        return from_llama_cpp_args(args, **kwargs)

    @classmethod
    def from_vllm(cls, d: Any, **kwargs: Any) -> RopeConfig:
        """Read vLLM's rope_scaling dict. See :func:`ropekit.interop.vllm.from_vllm`."""
        from ropekit.interop.vllm import from_vllm

        return from_vllm(d, **kwargs)

    @classmethod
    def load(cls, path: Any, **kwargs: Any) -> RopeConfig:
        """From a config.json, model directory or .gguf. See :func:`ropekit.interop.load_rope_config`."""
        from ropekit.interop.loader import load_rope_config

        return load_rope_config(path, **kwargs)

    def to_hf(self, **kwargs: Any) -> dict[str, Any]:
        """HF config keys (v5 ``rope_parameters``, or ``legacy=True``). See :func:`ropekit.interop.hf.to_hf`."""
        from ropekit.interop.hf import to_hf

        return to_hf(self, **kwargs)

    def to_gguf_metadata(self, arch: str) -> dict[str, Any]:
        """GGUF ``{arch}.rope.*`` metadata. See :func:`ropekit.interop.gguf_write.to_gguf_metadata`."""
        from ropekit.interop.gguf_write import to_gguf_metadata

        return to_gguf_metadata(self, arch)

    def to_llama_cpp_args(self) -> list[str]:
        """llama.cpp CLI flags. See :func:`ropekit.interop.llama_cpp.to_llama_cpp_args`."""
        from ropekit.interop.llama_cpp import to_llama_cpp_args

        return to_llama_cpp_args(self)

    def to_vllm(self) -> dict[str, Any]:
        """vLLM ``get_rope`` kwargs. See :func:`ropekit.interop.vllm.to_vllm`."""
        from ropekit.interop.vllm import to_vllm

        return to_vllm(self)
