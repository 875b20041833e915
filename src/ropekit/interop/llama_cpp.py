"""llama.cpp command-line dialect (``llama-cli`` / ``llama-server`` RoPE flags).

Semantics (llama.cpp ``common/arg.cpp`` and the ggml rope op):

- ``--rope-scale N`` means ``freq_scale = 1/N``; ``--rope-freq-scale F`` sets ``freq_scale`` directly.
- ``--rope-scaling none`` forces ``freq_scale = 1`` (a scale given with it is contradictory: refused here).
- ``--yarn-ext-factor``: -1 / absent means 1 for YaRN and 0 otherwise; the ramp mix is multiplied by it.
- ``--yarn-attn-factor A`` (default 1): inside its rope op llama.cpp multiplies cos/sin by
  ``A * (1 + 0.1 ln(1/freq_scale))`` whenever ``ext_factor != 0``, so HF's attention factor ``a`` is
  ``--yarn-attn-factor a / g(s)``. (Newer builds default these flags to -1 = "take from the model".)
- ``--yarn-beta-fast`` 32, ``--yarn-beta-slow`` 1; ``--yarn-orig-ctx`` 0 = the model's training context.
- The flags carry no head dim, rotary dim or pair layout (those come from the model), and no base unless
  ``--rope-freq-base`` is given. llama3 and LongRoPE live in GGUF tensors, dynamic/static NTK have no flag:
  asking for them raises instead of emitting a lossy config.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ropekit.core.config import RopeConfig
from ropekit.core.frequencies import yarn_mscale
from ropekit.core.scaling import Linear, YaRN
from ropekit.core.validation import check_choice, suggest

__all__ = ["LLAMA_CPP_FLAGS", "from_llama_cpp_args", "parse_llama_cpp_args", "to_llama_cpp_args"]

#: the RoPE flags llama.cpp accepts (values are parsed as numbers except --rope-scaling).
LLAMA_CPP_FLAGS = (
    "--rope-scaling", "--rope-scale", "--rope-freq-base", "--rope-freq-scale", "--yarn-orig-ctx",
    "--yarn-ext-factor", "--yarn-attn-factor", "--yarn-beta-slow", "--yarn-beta-fast",
)


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def to_llama_cpp_args(cfg: RopeConfig) -> list[str]:
    """llama.cpp flags reproducing ``cfg``'s frequencies and attention factor.

    >>> import ropekit
    >>> to_llama_cpp_args(ropekit.RopeConfig(head_dim=128, base=1e6,
    ...     scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=32768)))  # doctest: +NORMALIZE_WHITESPACE
    ['--rope-freq-base', '1000000', '--rope-scaling', 'yarn', '--rope-scale', '4', '--yarn-orig-ctx', '32768',
     '--yarn-ext-factor', '1', '--yarn-attn-factor', '1', '--yarn-beta-fast', '32', '--yarn-beta-slow', '1']
    """
    if not isinstance(cfg, RopeConfig):
        raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
    sc = cfg.scaling
    args = ["--rope-freq-base", _num(cfg.base)]
    if sc is None:
        return [*args, "--rope-scaling", "none"]
    if isinstance(sc, Linear):
        return [*args, "--rope-scaling", "linear", "--rope-scale", _num(sc.factor)]
    if isinstance(sc, YaRN):
        if not sc.truncate:
            raise ValueError("llama.cpp always floors/ceils the YaRN correction range; truncate=False "
                             "(gpt-oss) cannot be expressed as llama.cpp flags.")
        attn = cfg.attention_factor / yarn_mscale(sc.factor)  # llama.cpp multiplies g(s) back in its op
        return [*args, "--rope-scaling", "yarn", "--rope-scale", _num(sc.factor),
                "--yarn-orig-ctx", str(sc.original_max_position_embeddings), "--yarn-ext-factor", "1",
                "--yarn-attn-factor", _num(attn), "--yarn-beta-fast", _num(sc.beta_fast),
                "--yarn-beta-slow", _num(sc.beta_slow)]
    where = {
        "llama3": "the GGUF tensor rope_freqs (see ropekit.interop.gguf.to_gguf_tensors)",
        "longrope": "the GGUF tensors rope_factors_long/short",
        "dynamic": "nothing (llama.cpp has no dynamic NTK)",
        "ntk": "nothing but a folded --rope-freq-base (cfg.replace(base=..., scaling=None))",
        "proportional": "nothing (no proportional rotary in llama.cpp flags)",
    }[sc.method]
    raise ValueError(f"llama.cpp flags cannot express {sc.method!r} scaling; llama.cpp carries it in {where}.")


def parse_llama_cpp_args(args: Sequence[str] | str) -> dict[str, str]:
    """RoPE flags from an argument list (``--flag value`` or ``--flag=value``); other flags are skipped."""
    if isinstance(args, str):
        args = args.split()
    out: dict[str, str] = {}
    it = iter(range(len(args)))
    for i in it:
        tok = args[i]
        if not tok.startswith("--"):
            continue
        name, eq, val = tok.partition("=")
        if not (name.startswith("--rope") or name.startswith("--yarn")):
            continue
        if name not in LLAMA_CPP_FLAGS:
            raise ValueError(f"unknown llama.cpp RoPE flag {name!r}." + suggest(name, LLAMA_CPP_FLAGS))
        if not eq:
            if i + 1 >= len(args):
                raise ValueError(f"llama.cpp flag {name} needs a value.")
            val = args[i + 1]
            next(it, None)
        out[name] = val
    return out


def _float(flags: dict[str, str], name: str) -> float | None:
    if name not in flags:
        return None
    try:
        return float(flags[name])
    except ValueError:
        raise ValueError(f"llama.cpp flag {name} needs a number, got {flags[name]!r}.") from None


def from_llama_cpp_args(
    args: Sequence[str] | str,
    *,
    head_dim: int,
    base: float | None = None,
    rotary_dim: int | None = None,
    layout: str = "half",
    n_ctx_train: int | None = None,
) -> RopeConfig:
    """``RopeConfig`` from llama.cpp flags. The flags carry no head dim (``head_dim``, ``rotary_dim`` and
    ``layout`` come from the model), and no base unless ``--rope-freq-base`` is given (else pass ``base``).
    ``n_ctx_train`` resolves ``--yarn-orig-ctx 0`` / absent.

    >>> cfg = from_llama_cpp_args("--rope-scaling linear --rope-scale 4", head_dim=64, base=1e4)
    >>> cfg.scaling
    Linear(factor=4.0)
    """
    check_choice("layout", layout, ("half", "interleaved"))
    flags = parse_llama_cpp_args(args)
    flag_base = _float(flags, "--rope-freq-base")
    if flag_base is not None and flag_base != 0:
        base = flag_base
    if base is None:
        raise ValueError("llama.cpp flags carry no base unless --rope-freq-base is given; pass base= (the model's).")
    scale, fscale = _float(flags, "--rope-scale"), _float(flags, "--rope-freq-scale")
    if fscale is not None and fscale != 0:
        s_from_f = 1.0 / fscale
        if scale is not None and not math.isclose(scale, s_from_f, rel_tol=1e-6):
            raise ValueError(f"--rope-scale {scale} and --rope-freq-scale {fscale} disagree (scale = 1/freq_scale).")
        scale = s_from_f
    stype = flags.get("--rope-scaling")
    if stype is not None:
        check_choice("--rope-scaling", stype, ("none", "linear", "yarn"))
    if stype is None and scale not in (None, 1.0):
        raise ValueError("a scale without --rope-scaling takes the model's scaling type; pass --rope-scaling.")
    kw = {"head_dim": head_dim, "base": float(base), "layout": layout, "rotary_dim": rotary_dim}
    if stype in (None, "none"):
        if scale not in (None, 1.0):
            raise ValueError(f"--rope-scaling none ignores the scale ({scale}); drop it or pick linear/yarn.")
        return RopeConfig(**kw)
    s = 1.0 if scale is None else scale
    ext = _float(flags, "--yarn-ext-factor")
    ext = (1.0 if stype == "yarn" else 0.0) if ext is None or ext < 0 else ext
    attn_flag = _float(flags, "--yarn-attn-factor")
    attn_flag = 1.0 if attn_flag is None or attn_flag < 0 else attn_flag
    if ext == 0.0:  # pure interpolation; llama.cpp's op then applies attn_factor alone
        if attn_flag != 1.0:
            raise ValueError(f"--yarn-attn-factor {attn_flag} with ext_factor 0 has no ropekit equivalent.")
        return RopeConfig(**kw, scaling=None if s == 1.0 else Linear(factor=s))
    if ext != 1.0:
        raise ValueError(f"--yarn-ext-factor {ext} blends YaRN's ramp partially; ropekit's YaRN needs 1 (or 0).")
    orig = _float(flags, "--yarn-orig-ctx")
    L0 = int(orig) if orig else n_ctx_train
    if L0 is None:
        raise ValueError("--yarn-orig-ctx is 0/absent (the model's training context); pass n_ctx_train=.")
    bf = _float(flags, "--yarn-beta-fast")
    bs = _float(flags, "--yarn-beta-slow")
    total = attn_flag * yarn_mscale(s)  # the implicit factor inside llama.cpp's rope op
    return RopeConfig(**kw, scaling=YaRN(
        factor=s, original_max_position_embeddings=L0,
        beta_fast=32.0 if bf is None or bf < 0 else bf, beta_slow=1.0 if bs is None or bs < 0 else bs,
        attention_factor=None if attn_flag == 1.0 else total,
    ))
