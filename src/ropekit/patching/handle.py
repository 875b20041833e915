"""``PatchHandle``: install ropekit's RoPE into a loaded HF model, verified, and take it out exactly.

What is patched (per model instance, never at import, never on a class):

- every HF rotary module (``*RotaryEmbedding``) is replaced, on its parent, by a
  :class:`~ropekit.patching.adapter.RopeAdapter` answering the same call with ropekit's tables;
- for the model types in :data:`~ropekit.patching.fused.FUSED_FAMILIES`, and only when the probe shows it
  equals stock, each attention module's ``forward`` is shadowed by an instance attribute that rotates
  q/k with ropekit's fused kernels.

Both are first installed with the model's *own* RoPE and checked against the stock model
(:mod:`ropekit.patching.verify`); only then are the requested configs swapped in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ropekit.core.config import RopeConfig
from ropekit.core.plan import RopePlan
from ropekit.patching.adapter import RopeAdapter, RotarySite
from ropekit.patching.fused import FUSED_FAMILIES, fused_forward
from ropekit.patching.verify import PatchVerificationError, SiteFormat, model_probe, outputs_close, probe_site, where

__all__ = ["PatchHandle"]


def _model_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


class PatchHandle:
    """An active patch; :meth:`undo` (or leaving the ``with`` block) restores the model exactly.

    ``own`` is the model's RoPE as ropekit read it, ``plan`` what it runs now (per layer: a RopeConfig or
    None for NoPE); ``paths`` says, per layer type, whether the fused kernels or ropekit's tables feeding
    the model's own rotation do the work (``fused_refused`` says why the fused path was not used).

    >>> with ropekit.patch(model, ropekit.YaRN(factor=2.0, original_max_position_embeddings=8192)):  # doctest: +SKIP
    ...     logits = model(ids).logits
    """

    def __init__(self, model: nn.Module, own: RopePlan, plan: RopePlan, backend: str) -> None:
        self.model = model
        self.own = own
        self.plan = plan
        self.backend = backend
        self.active = False
        self.fused = False
        self.fused_refused: str | None = None
        self.formats: dict[str, SiteFormat] = {}
        self._sites: list[tuple[RotarySite, SiteFormat]] = []
        self._attn: list[tuple[nn.Module, bool, Any]] = []

    # -- what runs -----------------------------------------------------------------------------------------
    @property
    def model_type(self) -> str | None:
        return getattr(self.model.config, "model_type", None)

    @property
    def config(self) -> RopeConfig:
        """The single RopeConfig every rotating layer runs (raises for a hybrid plan: use ``plan``)."""
        return self.plan.single()

    @property
    def paths(self) -> dict[str, str]:
        return {t: ("fused" if self.fused else "tables") for t in self.plan.rope_types}

    def describe(self) -> list[dict[str, Any]]:
        """Per layer type: its layers, what it runs (RopeConfig fields or NoPE) and through which path."""
        rows = self.plan.describe()
        for r in rows:
            r["path"] = None if r["rope"] is None else self.paths.get(r["layer_type"])
        return rows

    def __repr__(self) -> str:
        state = "active" if self.active else "undone"
        parts = []
        for r in self.describe():
            rope = r["rope"]
            what = "NoPE" if rope is None else f"{rope['method']} base={rope['base']:g}"
            parts.append(f"{r['layer_type']}[{len(r['layers'])}]: {what}")
        path = "fused" if self.fused else "tables"
        return f"PatchHandle({self.model_type}, {'; '.join(parts)}, path={path}, {state})"

    # -- installing ----------------------------------------------------------------------------------------
    def _adapters(self, plan: RopePlan, *, carry: bool, backend: str) -> list[RopeAdapter]:
        out = []
        for site, sf in self._sites:
            if site.takes_layer_type:
                types = sf.types
            elif site.layer_index is not None:
                types = (plan.layer_types[site.layer_index],)
            else:
                types = sf.types
            configs: dict[str, RopeConfig] = {}
            for t in types:
                cfg = plan.for_layer(site.layer_index) if site.layer_index is not None else plan.by_type[t]
                if cfg is None:
                    raise ValueError(f"layer type {t!r} has no RoPE in the plan, but {site.path!r} rotates it.")
                configs[t] = cfg
            if not site.takes_layer_type and len(set(configs.values())) > 1:
                raise ValueError(
                    f"{where(self.model)} computes one rotary table ({site.path!r}) for layer types {list(types)}; "
                    "they cannot run different RoPE configs. Pass the same scaling for all of them."
                )
            out.append(RopeAdapter(configs=configs, default_type=types[0], fmt=sf.fmt, out_dtype=sf.out_dtype,
                                   backend=backend, carry=carry, stock=site.module))
        return out

    def _install(self, adapters: list[RopeAdapter]) -> None:
        device = None
        for (site, _), adapter in zip(self._sites, adapters):
            device = next((b.device for b in site.module.buffers()), device)
            if device is not None:
                adapter.to(device)
            setattr(site.parent, site.attr, adapter)

    def _restore_rotary(self) -> None:
        for site, _ in self._sites:
            setattr(site.parent, site.attr, site.module)

    def _install_fused(self) -> None:
        family = FUSED_FAMILIES[self.model_type]  # type: ignore[index]
        forward = fused_forward(family)
        for module in self.model.modules():
            if type(module).__name__ == family.attention_class:
                had = "forward" in module.__dict__
                self._attn.append((module, had, module.__dict__.get("forward")))
                module.forward = forward.__get__(module)

    def _restore_attention(self) -> None:
        for module, had, fwd in reversed(self._attn):
            if had:
                module.forward = fwd
            else:
                module.__dict__.pop("forward", None)
        self._attn.clear()

    def _check(self, ref: tuple[torch.Tensor, torch.Tensor], what: str) -> str | None:
        self._last_error: BaseException | None = None
        try:
            got = model_probe(self.model)
        except PatchVerificationError:
            raise
        except Exception as e:  # the replacement crashed on the real model: that is a failed verification
            self._last_error = e
            return f"{what} raised {type(e).__name__}: {e}"
        for name, r, g in (("prefill", ref[0], got[0]), ("cached decode step", ref[1], got[1])):
            ok, diff, tol = outputs_close(r, g)
            if not ok:
                return f"{what}: {name} outputs differ from stock by {diff:.3g} (tolerance {tol:.3g})"
        return None

    def _apply(self, sites: list[RotarySite]) -> None:
        model = self.model
        dtype = _model_dtype(model)
        try:
            self._sites = [(s, probe_site(model, s, self.own, dtype)) for s in sites]
            self.formats = {s.path: sf for s, sf in self._sites}
            ref = model_probe(model)  # stock
            if self.backend != "tables":
                self._try_fused(ref)  # verified on its own; when it runs, the tables path is not used
            if not self.fused:
                self._install(self._adapters(self.own, carry=False, backend="reference"))
                bad = self._check(ref, "ropekit's tables with the model's own RoPE")
                if bad:
                    raise PatchVerificationError(f"{where(model)}: {bad}.") from self._last_error
                self._check_tables_can_express()
            final = self._adapters(self.plan, carry=self.fused,
                                   backend="auto" if self.backend in ("auto", "tables") else self.backend)
            self._install(final)
        except BaseException:
            self.undo()
            raise
        model._ropekit_patch = self
        self.active = True

    def _try_fused(self, ref: tuple[torch.Tensor, torch.Tensor]) -> None:
        explicit = self.backend != "auto"
        if self.model_type not in FUSED_FAMILIES:
            if explicit:
                raise ValueError(
                    f"backend={self.backend!r} runs ropekit's fused attention, available for model types "
                    f"{sorted(FUSED_FAMILIES)}; {where(self.model)} is not one. Use backend='auto' or 'tables'."
                )
            self.fused_refused = "no fused attention for this model type (tables path)"
            return
        self._install(self._adapters(self.own, carry=True, backend="reference"))
        self._install_fused()
        bad = self._check(ref, "the fused attention")
        if bad is None:
            self.fused = True
            return
        self._restore_attention()
        if explicit:
            raise PatchVerificationError(f"{where(self.model)}: {bad}; backend={self.backend!r} needs the fused path.")
        self.fused_refused = bad

    def _check_tables_can_express(self) -> None:
        """The tables path keeps the model's own rotation code: layout and rotated width must stay its own."""
        for t in self.plan.rope_types:
            new, own = self.plan.by_type[t], self.own.by_type[t]
            assert new is not None and own is not None
            if (new.layout, new.rotary_dim) != (own.layout, own.rotary_dim):
                why = f" (fused path not used: {self.fused_refused})" if self.fused_refused else ""
                raise ValueError(
                    f"layer type {t!r}: the requested RopeConfig has layout={new.layout!r}, rotary_dim="
                    f"{new.rotary_dim}, but {where(self.model)} rotates layout={own.layout!r}, rotary_dim="
                    f"{own.rotary_dim} in its own code, which ropekit's tables feed. Change the weights "
                    "(ropekit.interop.permute_qk) or use a model type with fused attention" + why + "."
                )

    # -- undoing -------------------------------------------------------------------------------------------
    def undo(self) -> None:
        """Restore the original rotary modules and attention forwards (idempotent)."""
        self._restore_attention()
        self._restore_rotary()
        if getattr(self.model, "_ropekit_patch", None) is self:
            del self.model._ropekit_patch
        self.active = False

    def __enter__(self) -> PatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()
