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
  ``--rope-freq-base`` is given. llama3 and LongRoPE live in GGUF tensors and dynamic NTK has no flag: asking
  for them raises instead of emitting a lossy config. Static NTK is a pure base change, so it is written as
  the folded ``--rope-freq-base`` (exact) and reads back as ``"default"`` with that base.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ropekit.core.config import RopeConfig
from ropekit.core.frequencies import yarn_mscale
from ropekit.core.scaling import Linear, YaRN
from ropekit.core.validation import check_choice, suggest
from ropekit.interop.fields import folded_ntk_base, integer, refuse, scaling_of

__all__ = ["LLAMA_CPP_FLAGS", "from_llama_cpp_args", "parse_llama_cpp_args", "to_llama_cpp_args"]

#: the RoPE flags llama.cpp accepts (values are parsed as numbers except --rope-scaling).
LLAMA_CPP_FLAGS = (
    "--rope-scaling", "--rope-scale", "--rope-freq-base", "--rope-freq-scale", "--yarn-orig-ctx",
    "--yarn-ext-factor", "--yarn-attn-factor", "--yarn-beta-slow", "--yarn-beta-fast",
)

#: llama-cli's Self-Extend flags (long and short): refused by the reader, never skipped (they move positions)
_SELF_EXTEND_FLAGS = ("--grp-attn-n", "--grp-attn-w", "-gan", "-gaw")


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


# -- writers, one per method: cfg -> the full flag list (the base flag first) --------------------------------
def _write_default(cfg: RopeConfig) -> list[str]:
    return ["--rope-freq-base", _num(cfg.base), "--rope-scaling", "none"]


def _write_ntk(cfg: RopeConfig) -> list[str]:
    # static NTK is only a base change: the folded base gives bit-identical frequencies (read back as "default")
    return ["--rope-freq-base", _num(folded_ntk_base(cfg, "llama.cpp")), "--rope-scaling", "none"]


def _write_linear(cfg: RopeConfig) -> list[str]:
    return ["--rope-freq-base", _num(cfg.base), "--rope-scaling", "linear",
            "--rope-scale", _num(scaling_of(cfg, Linear).factor)]


def _write_yarn(cfg: RopeConfig) -> list[str]:
    sc = scaling_of(cfg, YaRN)
    if not sc.truncate:
        raise refuse("yarn", "llama.cpp", "llama.cpp always floors/ceils the YaRN correction range; truncate=False "
                     "(gpt-oss) cannot be expressed as llama.cpp flags.")
    attn = cfg.attention_factor / yarn_mscale(sc.factor)  # llama.cpp multiplies g(s) back in its op
    return ["--rope-freq-base", _num(cfg.base), "--rope-scaling", "yarn", "--rope-scale", _num(sc.factor),
            "--yarn-orig-ctx", str(sc.original_max_position_embeddings), "--yarn-ext-factor", "1",
            "--yarn-attn-factor", _num(attn), "--yarn-beta-fast", _num(sc.beta_fast),
            "--yarn-beta-slow", _num(sc.beta_slow)]


def to_llama_cpp_args(cfg: RopeConfig) -> list[str]:
    """llama.cpp flags reproducing ``cfg``'s frequencies and attention factor. Static NTK is written as its
    folded ``--rope-freq-base`` (exact; ``ropekit.interop.dialects.notes(cfg, "llama.cpp")`` says so).

    >>> import ropekit
    >>> to_llama_cpp_args(ropekit.RopeConfig(head_dim=128, base=1e6,
    ...     scaling=ropekit.YaRN(factor=4.0, original_max_position_embeddings=32768)))  # doctest: +NORMALIZE_WHITESPACE
    ['--rope-freq-base', '1000000', '--rope-scaling', 'yarn', '--rope-scale', '4', '--yarn-orig-ctx', '32768',
     '--yarn-ext-factor', '1', '--yarn-attn-factor', '1', '--yarn-beta-fast', '32', '--yarn-beta-slow', '1']
    """
    from ropekit.interop.dialects import writer  # here: dialects.py imports this module's readers and writers

    if not isinstance(cfg, RopeConfig):
        raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
    return writer(cfg.method, "llama.cpp")(cfg)


def parse_llama_cpp_args(args: Sequence[str] | str) -> dict[str, str]:
    """RoPE flags from an argument list (``--flag value`` or ``--flag=value``); other flags are skipped."""
    if isinstance(args, str):
        args = args.split()
    if not isinstance(args, Sequence) or any(not isinstance(a, str) for a in args):
        raise TypeError("args must be a string or a sequence of strings (a command line).")
    out: dict[str, str] = {}
    it = iter(range(len(args)))
    for i in it:
        tok = args[i]
        if tok.partition("=")[0] in _SELF_EXTEND_FLAGS:
            raise ValueError(
                f"{tok.partition('=')[0]} is llama-cli's Self-Extend: it moves cached positions between batches, "
                "which no RoPE config expresses. Model it with ropekit.SelfExtend(group_size=<--grp-attn-n>, "
                "window=<--grp-attn-w>, compat='llama.cpp'), and check the engine first: llama-cpp-python 0.3.36's "
                "llama.cpp re-rotates grouped keys the wrong way (ropekit.interop.llama_cpp_self_extend)."
            )
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


def _float(flags: Mapping[str, str], name: str) -> float | None:
    if name not in flags:
        return None
    try:
        v = float(flags[name])
    except ValueError:
        raise ValueError(f"llama.cpp flag {name} needs a number, got {flags[name]!r}.") from None
    if not math.isfinite(v):
        raise ValueError(f"llama.cpp flag {name} needs a finite number, got {flags[name]!r}.")
    return v


def _scale(flags: Mapping[str, str]) -> float | None:
    scale, fscale = _float(flags, "--rope-scale"), _float(flags, "--rope-freq-scale")
    if fscale is not None and fscale != 0:
        s_from_f = 1.0 / fscale
        if scale is not None and not math.isclose(scale, s_from_f, rel_tol=1e-6):
            raise ValueError(f"--rope-scale {scale} and --rope-freq-scale {fscale} disagree (scale = 1/freq_scale).")
        scale = s_from_f
    return scale


def _ext_factor(flags: Mapping[str, str]) -> float:
    ext = _float(flags, "--yarn-ext-factor")
    return (1.0 if flags.get("--rope-scaling") == "yarn" else 0.0) if ext is None or ext < 0 else ext


def _attn_flag(flags: Mapping[str, str]) -> float:
    attn = _float(flags, "--yarn-attn-factor")
    return 1.0 if attn is None or attn < 0 else attn


def _method(flags: Mapping[str, str], scale: float | None) -> str:
    """The ropekit method the flags mean: the ramp (ext_factor), not the type name, decides linear vs yarn."""
    stype = flags.get("--rope-scaling")
    if stype is not None:
        check_choice("--rope-scaling", stype, ("none", "linear", "yarn"))
    if stype is None and scale not in (None, 1.0):
        raise ValueError("a scale without --rope-scaling takes the model's scaling type; pass --rope-scaling.")
    if stype in (None, "none"):
        if scale not in (None, 1.0):
            raise ValueError(f"--rope-scaling none ignores the scale ({scale}); drop it or pick linear/yarn.")
        return "default"
    return "linear" if _ext_factor(flags) == 0.0 else "yarn"


# -- readers, one per method: (flags, scale, n_ctx_train) -> scaling -------------------------------------
def _read_default(flags: Mapping[str, str], s: float, n_ctx_train: int | None) -> None:
    return None


def _read_linear(flags: Mapping[str, str], s: float, n_ctx_train: int | None) -> Linear | None:
    # ext_factor 0: pure interpolation; llama.cpp's op then applies attn_factor alone
    if _attn_flag(flags) != 1.0:
        raise ValueError(f"--yarn-attn-factor {_attn_flag(flags)} with ext_factor 0 has no ropekit equivalent.")
    return None if s == 1.0 else Linear(factor=s)


def _read_yarn(flags: Mapping[str, str], s: float, n_ctx_train: int | None) -> YaRN:
    ext = _ext_factor(flags)
    if ext != 1.0:
        raise ValueError(f"--yarn-ext-factor {ext} blends YaRN's ramp partially; ropekit's YaRN needs 1 (or 0).")
    orig = _float(flags, "--yarn-orig-ctx")
    L0 = integer("--yarn-orig-ctx", orig) if orig else n_ctx_train
    if L0 is None:
        raise ValueError("--yarn-orig-ctx is 0/absent (the model's training context); pass n_ctx_train=.")
    bf = _float(flags, "--yarn-beta-fast")
    bs = _float(flags, "--yarn-beta-slow")
    attn_flag = _attn_flag(flags)
    YaRN(factor=s, original_max_position_embeddings=L0)  # validate s before llama.cpp's g(s) uses it
    total = attn_flag * yarn_mscale(s)  # the implicit factor inside llama.cpp's rope op
    return YaRN(factor=s, original_max_position_embeddings=L0,
                beta_fast=32.0 if bf is None or bf < 0 else bf, beta_slow=1.0 if bs is None or bs < 0 else bs,
                attention_factor=None if attn_flag == 1.0 else total)


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
    from ropekit.interop.dialects import reader  # here: dialects.py imports this module's readers and writers

    check_choice("layout", layout, ("half", "interleaved"))
    flags = parse_llama_cpp_args(args)
    flag_base = _float(flags, "--rope-freq-base")
    if flag_base is not None and flag_base != 0:
        base = flag_base
    if base is None:
        raise ValueError("llama.cpp flags carry no base unless --rope-freq-base is given; pass base= (the model's).")
    scale = _scale(flags)
    scaling = reader(_method(flags, scale), "llama.cpp")(flags, 1.0 if scale is None else scale, n_ctx_train)
    return RopeConfig(head_dim=head_dim, base=float(base), layout=layout, rotary_dim=rotary_dim,  # type: ignore[arg-type]
                      scaling=scaling)
