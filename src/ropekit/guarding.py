"""``ropekit.guard(model)``: refuse (or warn about) a forward past the context the model's RoPE covers.

(The module is ``ropekit.guarding`` so that importing it never shadows the ``ropekit.guard`` function.)

Past its trained context an unscaled model does not crash, it degrades (SmolLM2-135M: perplexity ~7 ->
~690 at 1.5-2x its 8192 tokens). The guard makes that loud: a forward pre-hook on each rotary module (they
receive ``position_ids`` explicitly) takes one ``max()`` and compares it with the covered context of the
RoPE in force: ``model._ropekit_patch.plan`` when a ropekit patch is active, else the model's config.
Arm it after patching; if the rotary modules are replaced later, the guard finds the new ones on the
next forward (one identity check per forward).

>>> import transformers, torch, ropekit
>>> cfg = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
...     intermediate_size=128, vocab_size=256, max_position_embeddings=64)
>>> model = transformers.AutoModelForCausalLM.from_config(cfg)
>>> with ropekit.guard(model):
...     _ = model(torch.zeros(1, 8, dtype=torch.long))                       # fine: 8 <= 64
...     try:
...         model(torch.zeros(1, 8, dtype=torch.long), position_ids=torch.arange(60, 68)[None])
...     except ValueError as e:
...         print(str(e)[:60])
position 67 passes the context 64 that this model's RoPE cov
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.plan import RopePlan

__all__ = ["GuardHandle", "guard"]

_ACTIONS = ("raise", "warn")


def _plan_in_force(model: torch.nn.Module) -> RopePlan:
    handle = getattr(model, "_ropekit_patch", None)
    plan = getattr(handle, "plan", None)
    if isinstance(plan, RopePlan):
        return plan
    cfg = getattr(handle, "config", None)
    if isinstance(cfg, RopeConfig):  # a patch handle without a plan: one config for every layer
        n = int(getattr(getattr(model, "config", None), "num_hidden_layers", 1) or 1)
        return RopePlan(layer_types=("full_attention",) * n, by_type={"full_attention": cfg})
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"model must be a Hugging Face model (with .config), got {type(model).__name__}.")
    return RopePlan.from_hf(config)


def _limits(model: torch.nn.Module, plan: RopePlan, context: int | None) -> tuple[int, int, RopeConfig]:
    """(covered context, trained context, the config that limits it) over the layers that see long distances."""
    from ropekit.doctor.findings import covered_context

    window = getattr(getattr(model, "config", None), "sliding_window", None)
    best: tuple[float, int, RopeConfig] | None = None
    for t in plan.rope_types:
        cfg = plan.by_type[t]
        assert cfg is not None
        if "sliding" in t and isinstance(window, int) and len(plan.rope_types) > 1:
            continue  # sliding layers never see a distance beyond their window
        trained = context or cfg.original_max_position_embeddings or cfg.max_position_embeddings
        if trained is None:
            raise ValueError("the model's config names no max_position_embeddings; pass context=.")
        cover = covered_context(cfg) if context is None or cfg.scaling is not None else float(context)
        if cfg.scaling is not None and context is not None:
            cover = max(cover, float(context)) if cover != math.inf else cover
        if best is None or cover < best[0]:
            best = (cover, int(trained), cfg)
    if best is None:
        raise ValueError("this model has no layer that rotates (NoPE everywhere): nothing to guard.")
    cover, trained, cfg = best
    return (2**62 if cover == math.inf else int(cover)), trained, cfg


def _remedies(trained: int, position: int) -> str:
    f = math.ceil((position + 1) / trained * 100) / 100
    return (f"Linear(factor>={f:g}) / YaRN(factor={f:g}, original_max_position_embeddings={trained}) / "
            f"DynamicNTK(factor={f:g}, original_max_position_embeddings={trained})")


class GuardHandle:
    """An armed guard: ``.undo()`` removes its hooks; usable as a context manager."""

    def __init__(self, model: torch.nn.Module, action: str, context: int | None) -> None:
        self.model, self.action, self.context = model, action, context
        self.warned = False
        self._hooks: list[Any] = []
        self._modules: list[tuple[str, torch.nn.Module]] = []
        self._outer = model.register_forward_pre_hook(self._recheck)
        self._arm()

    def __repr__(self) -> str:
        return f"GuardHandle(action={self.action!r}, covered={self.covered}, modules={[n for n, _ in self._modules]})"

    def _arm(self) -> None:
        from ropekit.doctor.live import rotary_modules

        for h in self._hooks:
            h.remove()
        self.plan = _plan_in_force(self.model)
        self.covered, self.trained, self.limiting = _limits(self.model, self.plan, self.context)
        self._modules = rotary_modules(self.model)
        if not self._modules:
            raise ValueError(f"{type(self.model).__name__} has no rotary module (*RotaryEmbedding) to guard.")
        self._hooks = [m.register_forward_pre_hook(self._check, with_kwargs=True) for _, m in self._modules]

    def _recheck(self, module: torch.nn.Module, args: Any) -> None:
        for name, m in self._modules:  # a patch applied after guard() swaps the modules: follow it
            if self.model.get_submodule(name) is not m:
                self._arm()
                return

    def _check(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        pos = kwargs.get("position_ids", args[1] if len(args) > 1 else None)
        if not isinstance(pos, torch.Tensor) or pos.numel() == 0:
            return
        top = int(pos.max())
        if top < self.covered:
            return
        msg = (f"position {top} passes the context {self.covered} that this model's RoPE covers (trained "
               f"context {self.trained}, {self.limiting.method}); no scaling covers it, so attention degrades "
               f"silently. Scalings that would cover it: {_remedies(self.trained, top)}; apply one with "
               f"ropekit.patch(model, ...) before arming the guard.")
        if self.action == "raise":
            raise ValueError(msg)
        if not self.warned:
            self.warned = True
            warnings.warn(msg, RuntimeWarning, stacklevel=2)

    def undo(self) -> None:
        """Remove every hook (idempotent)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._outer.remove()

    def __enter__(self) -> GuardHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()


def guard(model: torch.nn.Module, action: str = "raise", context: int | None = None) -> GuardHandle:
    """Arm a guard on ``model``: a forward at a position the RoPE in force does not cover raises
    ``ValueError`` (``action="raise"``) or warns once (``"warn"``), naming the context, the position and the
    scalings that would cover it. ``context``: the trained context to enforce (default: the config's).
    Returns a :class:`GuardHandle` (``.undo()``, or use ``with``). Arm it after :func:`ropekit.patch`.

    >>> handle = guard(model, action="warn")     # doctest: +SKIP
    >>> handle.undo()                            # doctest: +SKIP
    """
    if action not in _ACTIONS:
        raise ValueError(f"action must be one of {list(_ACTIONS)}, got {action!r}.")
    if context is not None and (isinstance(context, bool) or not isinstance(context, int) or context < 1):
        raise ValueError(f"context must be None or a positive int, got {context!r}.")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a loaded HF model), got {type(model).__name__}.")
    return GuardHandle(model, action, context)
