"""Attention under an extension method: the O(n^2) oracle and the chunked path with O(n * chunk) memory.

Shapes follow Hugging Face's attention interface: ``q`` ``(batch, q_heads, n_q, head_dim)``, ``k``/``v``
``(batch, kv_heads, n_k, head_dim)`` with ``q_heads`` a multiple of ``kv_heads`` (GQA: query head ``h``
reads kv head ``h // (q_heads // kv_heads)``, as HF's ``repeat_kv``). Positions are int64 ``(n_q,)`` /
``(n_k,)``; by default keys sit at ``0 .. n_k - 1`` and queries are the last ``n_q`` of them (prefill, or
a decode step against a cache). Attention is causal (key position <= query position).

Rotations are formed from float64 angles (``position * inv_freq``, the difference of two such when
re-placing an already rotated tensor) and rounded once to float32: re-placing q/k that the model rotated
at their true positions (``rotated=True``) costs one rotation, no un-rotation.
"""

from __future__ import annotations

import torch

from ropekit.core.config import RopeConfig
from ropekit.core.reference import rotate_gathered
from ropekit.extension.methods import Extension

__all__ = ["SCORE_ELEMENTS", "extended_attention", "place", "reference_attention"]

#: score-matrix elements the chunked path forms at once (16 MB in fp32; larger blocks cost page faults on
#: every allocation, smaller ones Python overhead); the query chunk follows from it
SCORE_ELEMENTS = 1 << 22


def _cos_sin(angle: torch.Tensor, scale: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return (angle.cos() * scale).to(dtype), (angle.sin() * scale).to(dtype)


def place(x: torch.Tensor, cfg: RopeConfig, at: torch.Tensor, *, cfg_from: RopeConfig | None = None,
          at_from: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` ``(batch, heads, n, head_dim)`` rotated to positions ``at`` (float64 ``(n,)``) under ``cfg``.

    ``x`` is raw (``at_from=None``), or already rotated under ``cfg_from`` at ``at_from``: then only the
    difference is applied (one rotation, attention factors divided out). Returns float32 (float64 for
    float64 input). The tail past ``rotary_dim`` passes through.

    >>> import torch, ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=8)
    >>> x, p = torch.randn(1, 2, 5, 8), torch.arange(5.0, dtype=torch.float64)
    >>> y = place(place(x, cfg, p), cfg, p + 3, cfg_from=cfg, at_from=p)   # rotate to p, then move by 3
    >>> torch.allclose(y, place(x, cfg, p + 3), atol=1e-6)
    True
    """
    calc = torch.promote_types(x.dtype, torch.float32)
    inv, factor = cfg.frequencies()
    angle = at.to(torch.float64)[:, None] * inv.to(at.device, torch.float64)
    scale = factor
    if at_from is not None:
        src = cfg if cfg_from is None else cfg_from
        if src.layout != cfg.layout or src.rotary_dim != cfg.rotary_dim:
            raise ValueError("cfg_from and cfg must pair the same channels (layout and rotary_dim).")
        if src == cfg and torch.equal(at_from.to(torch.float64), at.to(torch.float64)):
            return x.to(calc)  # already there: no rotation, no rounding
        inv_from, factor_from = src.frequencies()
        angle = angle - at_from.to(torch.float64)[:, None] * inv_from.to(at.device, torch.float64)
        scale = factor / factor_from
    cos, sin = _cos_sin(angle.to(x.device), scale, calc)
    out = rotate_gathered(x.to(calc).transpose(1, 2), cos, sin, layout=cfg.layout)  # wants (b, n, h, d)
    return out.transpose(1, 2).contiguous()


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, method: Extension, cfg: RopeConfig,
           q_pos: torch.Tensor | None, k_pos: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(method, Extension):
        raise TypeError(f"method must be a ropekit.extension config (SelfExtend, DualChunk, ...), got "
                        f"{type(method).__name__}.")
    if not isinstance(cfg, RopeConfig):
        raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() != 4:
            raise ValueError(f"{name} must be a floating (batch, heads, seqlen, head_dim) tensor.")
    if k.shape[:3] != v.shape[:3] or q.shape[0] != k.shape[0] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q, k, v shapes do not fit: {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}.")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"q heads ({q.shape[1]}) must be a multiple of kv heads ({k.shape[1]}).")
    if q.shape[-1] != cfg.head_dim:
        raise ValueError(f"head_dim {q.shape[-1]} does not match cfg.head_dim={cfg.head_dim}.")
    n_q, n_k = q.shape[2], k.shape[2]
    if n_q > n_k:
        raise ValueError(f"more queries ({n_q}) than keys ({n_k}): the keys must include the queries' own.")
    dev = q.device

    def check(name: str, p: torch.Tensor, n: int) -> torch.Tensor:
        if not isinstance(p, torch.Tensor) or p.dtype not in (torch.int32, torch.int64) or p.shape != (n,):
            got = f"{p.dtype} {tuple(p.shape)}" if isinstance(p, torch.Tensor) else type(p).__name__
            raise ValueError(f"{name} must be an int64 tensor of shape ({n},), got {got}.")
        if n and int(p.min()) < 0:
            raise ValueError(f"{name} must be >= 0.")
        return p.to(dev).long()

    kp = torch.arange(n_k, device=dev) if k_pos is None else check("k_pos", k_pos, n_k)
    qp = kp[n_k - n_q:] if q_pos is None else check("q_pos", q_pos, n_q)
    return qp, kp


def _allowed(i: torch.Tensor, j: torch.Tensor, sliding_window: int | None) -> torch.Tensor:
    ok = j <= i
    if sliding_window is not None:
        ok &= (i - j) < sliding_window
    return ok


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, method: Extension, cfg: RopeConfig, *,
                        q_pos: torch.Tensor | None = None, k_pos: torch.Tensor | None = None,
                        scale: float | None = None, softcap: float | None = None,
                        sliding_window: int | None = None) -> torch.Tensor:
    """The oracle: float64 softmax attention on a materialised score matrix, O(n^2) memory (tiny inputs only).

    ``q``/``k`` are raw (not rotated). Each pair's score is ``<R(r_ij) q_i, R(0) k_j>`` with ``r_ij`` from
    :meth:`~ropekit.extension.methods.Extension.relative`, so the oracle never uses the region split the
    fast path relies on. Returns float64 ``(batch, q_heads, n_q, head_dim_v)``.

    >>> import torch, ropekit
    >>> from ropekit.extension import ReRoPE
    >>> cfg = ropekit.RopeConfig(head_dim=8)
    >>> q, k, v = torch.randn(1, 2, 6, 8), torch.randn(1, 1, 6, 8), torch.randn(1, 1, 6, 8)
    >>> reference_attention(q, k, v, ReRoPE(window=3), cfg).shape
    torch.Size([1, 2, 6, 8])
    """
    qp, kp = _check(q, k, v, method, cfg, q_pos, k_pos)
    run = method.rope_at(cfg, int(max(qp.max(), kp.max())) + 1)
    b, hq, n_q, d = q.shape
    g = hq // k.shape[1]
    i, j = qp[:, None], kp[None, :]
    rel = method.relative(i, j)  # (n_q, n_k) float64
    inv, factor = run.frequencies()
    cos, sin = _cos_sin(rel[..., None] * inv.to(q.device, torch.float64), factor, torch.float64)
    qx = q.to(torch.float64).permute(0, 2, 1, 3)[:, :, None].expand(b, n_q, kp.numel(), hq, d)
    qr = rotate_gathered(qx, cos, sin, layout=run.layout)  # (b, i, j, h, d): q_i rotated by r_ij
    kr = place(k.to(torch.float64), run, torch.zeros(kp.numel(), dtype=torch.float64, device=q.device))
    kr = kr.repeat_interleave(g, dim=1)
    s = torch.einsum("bijhd,bhjd->bhij", qr, kr) * (d ** -0.5 if scale is None else scale)
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    s = s.masked_fill(~_allowed(i, j, sliding_window), float("-inf"))
    return torch.softmax(s, dim=-1) @ v.to(torch.float64).repeat_interleave(g, dim=1)


def _dedupe(placed: list[tuple[torch.Tensor, torch.Tensor]], at: torch.Tensor, make: object) -> torch.Tensor:
    for a, x in placed:
        if a is at or (a.shape == at.shape and torch.equal(a, at)):
            return x
    x = make(at)  # type: ignore[operator]
    placed.append((at, x))
    return x


def _fused_kernel(q: torch.Tensor, calc: torch.dtype) -> object:
    """torch's CPU flash-attention op, which also returns the log-sum-exp the regions are merged with.

    A private aten op (stable since torch 2.1): when it is missing, or off CPU, the plain path runs.
    """
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return op if op is not None and q.device.type == "cpu" and calc == torch.float32 else None


def extended_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, method: Extension, cfg: RopeConfig, *,
                       q_pos: torch.Tensor | None = None, k_pos: torch.Tensor | None = None, rotated: bool = False,
                       scale: float | None = None, softcap: float | None = None, sliding_window: int | None = None,
                       mask: torch.Tensor | None = None, chunk: int | None = None) -> torch.Tensor:
    """The method's attention, chunked over queries: memory O(n_k * chunk), never an n_q x n_k matrix.

    ``rotated=True``: q/k were rotated under ``cfg`` at their true positions (what a HF attention function
    receives); each region re-places them by the position difference. ``mask``: an extra HF mask
    broadcastable to ``(batch, q_heads, n_q, n_k)`` (bool: True = attend; float: added to the scores).
    ``chunk``: queries per step (None: as many as keep one score block under :data:`SCORE_ELEMENTS`).
    Per query chunk, each region's scores are formed only over the key columns it owns, and the regions
    are merged by log-sum-exp. Returns ``(batch, q_heads, n_q, head_dim_v)`` in ``q``'s dtype.

    >>> import torch, ropekit
    >>> from ropekit.extension import SelfExtend
    >>> cfg = ropekit.RopeConfig(head_dim=8)
    >>> q, k, v = torch.randn(1, 2, 40, 8), torch.randn(1, 1, 40, 8), torch.randn(1, 1, 40, 8)
    >>> se = SelfExtend(group_size=3, window=7)
    >>> fast = extended_attention(q, k, v, se, cfg, chunk=16)
    >>> bool((fast - reference_attention(q, k, v, se, cfg)).abs().max() < 1e-5)
    True
    """
    qp, kp = _check(q, k, v, method, cfg, q_pos, k_pos)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be an int >= 1 or None, got {chunk!r}.")
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dim() != 4
                             or mask.shape[1] not in (1, q.shape[1])):
        raise ValueError("mask must be a (batch or 1, 1 or q_heads, n_q, n_k) tensor, as HF attention masks are.")
    run = method.rope_at(cfg, int(max(qp.max(), kp.max())) + 1)
    b, hq, n_q, d = q.shape
    hk, n_k = k.shape[1], k.shape[2]
    g = hq // hk
    calc = torch.promote_types(q.dtype, torch.float32)
    scale = d ** -0.5 if scale is None else scale
    src = cfg if rotated else None
    qs: list[tuple[torch.Tensor, torch.Tensor]] = []
    ks: list[tuple[torch.Tensor, torch.Tensor]] = []
    regions = []
    q_from, k_from = (qp.double(), kp.double()) if rotated else (None, None)
    for part in method.parts(qp, kp):
        qr = _dedupe(qs, part.q_at, lambda at: place(q, run, at, cfg_from=src, at_from=q_from))
        kr = _dedupe(ks, part.k_at, lambda at: place(k, run, at, cfg_from=src, at_from=k_from))
        regions.append((qr.view(b, hk, g, n_q, d), kr.unsqueeze(2), part.mask))
    vv = v.to(calc).unsqueeze(2)  # (b, hk, 1, n_k, dv)
    step = chunk or max(1, min(n_q, SCORE_ELEMENTS // max(1, b * hq * n_k)))
    out = torch.empty(b, hk, g, n_q, v.shape[-1], dtype=calc, device=q.device)
    fused = _fused_kernel(q, calc)
    qi, kj = qp.int(), kp.int()[None, :]  # masks in int32: half the bytes of the (chunk, n_k) temporaries
    for a in range(0, n_q, step):
        e = min(n_q, a + step)
        i = qi[a:e, None]
        run_max = torch.full((b, hk, g, e - a, 1), float("-inf"), dtype=calc, device=q.device)
        run_sum = torch.zeros_like(run_max)
        acc = torch.zeros(b, hk, g, e - a, v.shape[-1], dtype=calc, device=q.device)
        causal = _allowed(i, kj, sliding_window)
        for qr, kr, owns in regions:
            allowed = causal & owns(i, kj)
            cols = allowed.any(0).nonzero()
            if cols.numel() == 0:
                continue
            lo, hi = int(cols[0]), int(cols[-1]) + 1  # the key columns this region owns for these queries
            if fused is not None and softcap is None:
                bias = torch.zeros(e - a, hi - lo, dtype=calc, device=q.device).masked_fill_(
                    ~allowed[:, lo:hi], float("-inf"))
                bias = bias.expand(b, 1, e - a, hi - lo)
                if mask is not None:
                    mk = mask[..., a:e, lo:hi].expand(b, -1, -1, -1)
                    mk = torch.zeros_like(mk, dtype=calc).masked_fill_(~mk, float("-inf")) if mk.dtype == torch.bool \
                        else mk.to(calc)
                    bias = bias + mk
                # query heads of one kv head become extra query rows: the kernel has no GQA
                bias = bias.unsqueeze(2).expand(b, bias.shape[1], g, e - a, hi - lo)
                bias = bias.reshape(b, -1 if bias.shape[1] == 1 else hk, g * (e - a), hi - lo)
                qc = qr[..., a:e, :].reshape(b, hk, g * (e - a), d)
                o, lse = fused(qc, kr[..., lo:hi, :].squeeze(2), vv[..., lo:hi, :].squeeze(2), 0.0, False,
                               attn_mask=bias.expand(b, hk, -1, -1), scale=scale)
                # rows this region owns no key of: the kernel's output there is not defined, weight them 0
                empty = ~allowed[:, lo:hi].any(-1)[:, None]
                lse = lse.reshape(b, hk, g, e - a, 1).masked_fill(empty, float("-inf"))
                o = o.reshape(b, hk, g, e - a, -1).masked_fill(empty, 0.0)
                m = torch.maximum(run_max, lse)
                m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
                w_old, w_new = torch.exp(run_max - m_safe), torch.exp(lse - m_safe)
                run_sum = run_sum * w_old + w_new
                acc = acc * w_old + o * w_new
                run_max = m
                continue
            # in place from here: one score block alive per region, whatever the method
            s = torch.matmul(qr[..., a:e, :], kr[..., lo:hi, :].transpose(-1, -2)).mul_(scale)
            if softcap is not None:
                s.div_(softcap).tanh_().mul_(softcap)
            if mask is not None:
                mk = mask[..., a:e, lo:hi]
                mk = mk.reshape(mk.shape[0], *((1, 1) if mk.shape[1] == 1 else (hk, g)), e - a, hi - lo)
                s.masked_fill_(~mk, float("-inf")) if mk.dtype == torch.bool else s.add_(mk.to(calc))
            s.masked_fill_(~allowed[:, lo:hi], float("-inf"))
            m = torch.maximum(run_max, s.amax(-1, keepdim=True))
            m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # rows with nothing yet stay 0
            p = s.sub_(m_safe).exp_()
            carry = torch.exp(run_max - m_safe)
            run_sum = run_sum * carry + p.sum(-1, keepdim=True)
            acc = acc * carry + p @ vv[..., lo:hi, :]
            run_max = m
            del s, p
        out[..., a:e, :] = acc / run_sum
    return out.view(b, hq, n_q, -1).to(q.dtype)
