"""Find a HF model's rotary modules and the drop-in that replaces each one with ropekit's precise tables.

transformers' convention (every RoPE architecture in 5.x follows it): a module whose class name ends in
``RotaryEmbedding`` maps ``(x, position_ids[, layer_type])`` to what the attention needs (usually
``(cos, sin)``), once per forward for the whole model, or once per layer where each attention owns one.
:class:`RopeAdapter` answers the same call with ropekit's float64-derived tables, in the format the stock
module was seen to return (:mod:`ropekit.patching.formats`), so the model's own rotation code runs
unchanged on ropekit's numbers.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import torch
from torch import nn

from ropekit.core.config import RopeConfig
from ropekit.modules.rotary import RotaryEmbedding
from ropekit.patching.formats import render

__all__ = ["RopeAdapter", "RotaryOutput", "RotarySite", "find_rotary_sites"]

_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|decoder_layers)\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class RotarySite:
    """One rotary module of a model: where it hangs and how it is called."""

    path: str  # dotted name in model.named_modules()
    parent: nn.Module  # the module holding it as an attribute
    attr: str  # the attribute name on parent
    module: nn.Module  # the stock rotary module
    layer_index: int | None  # the decoder layer owning it, or None for a model-wide module
    takes_layer_type: bool  # forward(x, position_ids, layer_type) as in Gemma-3


def _is_rotary(module: nn.Module) -> bool:
    return type(module).__name__.endswith("RotaryEmbedding") and not isinstance(module, RopeAdapter)


def find_rotary_sites(model: nn.Module) -> list[RotarySite]:
    """Every HF rotary module of ``model`` (not those nested inside another rotary module)."""
    sites: list[RotarySite] = []
    parents = dict(model.named_modules())
    for path, module in model.named_modules():
        if not _is_rotary(module) or any(path.startswith(s.path + ".") for s in sites):
            continue
        parent_path, _, attr = path.rpartition(".")
        m = _LAYER_INDEX.search(path)
        try:
            params = inspect.signature(module.forward).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        sites.append(RotarySite(
            path=path, parent=parents[parent_path], attr=attr, module=module,
            layer_index=int(m.group(1)) if m else None, takes_layer_type="layer_type" in params,
        ))
    return sites


class RotaryOutput(tuple):
    """The stock module's ``(cos, sin)`` plus the positions and ropekit module that made them.

    The fused attention path reads ``positions``/``rope`` to rotate with ropekit's kernels; any other
    consumer sees the plain pair the stock module would have returned.
    """

    positions: torch.Tensor
    rope: RotaryEmbedding

    def __new__(cls, pair: tuple[torch.Tensor, torch.Tensor], positions: torch.Tensor,
                rope: RotaryEmbedding) -> RotaryOutput:
        obj = super().__new__(cls, pair)
        obj.positions = positions
        obj.rope = rope
        return obj


class RopeAdapter(nn.Module):
    """Drop-in for one HF rotary module: the same call, ropekit's tables, the stock output format.

    ``configs`` maps each layer type the module serves to its RopeConfig; a module called without
    ``layer_type`` serves ``default_type``. ``out_dtype`` is the stock module's output dtype when it
    does not follow ``x`` (None: follow ``x`` as most modules do).
    """

    def __init__(self, *, configs: dict[str, RopeConfig], default_type: str, fmt: str,
                 out_dtype: torch.dtype | None, backend: str = "reference", carry: bool = False,
                 stock: nn.Module | None = None) -> None:
        super().__init__()
        # plain attributes of the stock module (its HF config, rope_type, ...) that model code may read;
        # tensors are not copied: the tables here are the only frequencies this module answers with
        for key, value in (vars(stock).items() if stock is not None else ()):
            if not key.startswith("_") and not isinstance(value, (torch.Tensor, nn.Module)) and key != "training":
                self.__dict__.setdefault(key, value)
        if default_type not in configs:
            raise ValueError(f"default_type={default_type!r} is not one of {sorted(configs)}.")
        self.fmt = fmt
        self.out_dtype = out_dtype
        self.default_type = default_type
        self.carry = carry  # attach positions for the fused attention path
        self.ropes = nn.ModuleDict({t: RotaryEmbedding(c, backend=backend) for t, c in configs.items()})

    @property
    def configs(self) -> dict[str, RopeConfig]:
        return {t: r.config for t, r in self.ropes.items()}

    def extra_repr(self) -> str:
        return f"fmt={self.fmt!r}, types={list(self.ropes)}"

    def rope_for(self, layer_type: str | None) -> RotaryEmbedding:
        lt = self.default_type if layer_type is None else layer_type
        if lt not in self.ropes:
            raise ValueError(f"layer_type={lt!r} is not served by this rotary module; it serves {list(self.ropes)}.")
        return self.ropes[lt]

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor | None = None, layer_type: str | None = None,
                *args: object, **kwargs: object) -> object:
        if position_ids is None:  # some modules default to 0..seqlen-1 of x (batch, seqlen, ...)
            position_ids = torch.arange(x.shape[1], device=x.device)[None]
        pos = position_ids.long()
        if pos.dim() == 3:  # M-RoPE (axes, batch, seqlen): text-only prompts give every axis the same positions
            if not bool((pos == pos[:1]).all()):
                raise ValueError(
                    "ropekit's patch got multi-axis (M-RoPE) position ids whose axes differ (an image or video "
                    "in the prompt); it rotates 1-D positions only. Undo the patch for multimodal inputs."
                )
            pos = pos[0]
        rope = self.rope_for(layer_type)
        cos, sin = rope.cos_sin(pos)  # float32 (..., rotary_dim // 2) from float64 angles, attention factor in
        out = render(self.fmt, cos, sin, self.out_dtype or x.dtype)
        if self.carry and isinstance(out, tuple):
            return RotaryOutput(out, pos, rope)
        return out
