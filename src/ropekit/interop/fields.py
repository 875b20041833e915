"""What every dialect reader and writer shares: typed field coercion and the one refusal message.

Dialect inputs are untrusted (a config.json, GGUF metadata, a command line). A reader turns each field into
the type ropekit needs here, so that junk raises ``ValueError``/``TypeError`` naming the field, never a
``KeyError``, ``OverflowError`` or ``ZeroDivisionError`` further down, and never a silently truncated value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

from ropekit.core.config import RopeConfig
from ropekit.core.scaling import NTK, Scaling

__all__ = ["MAX_INT", "boolean", "folded_ntk_base", "integer", "number", "refuse", "require", "scaling_of"]

S = TypeVar("S", bound=Scaling)

#: largest count/length a reader accepts: beyond it float arithmetic on the value is no longer exact.
MAX_INT = 2**53


def refuse(method: str, dialect: str, reason: str) -> ValueError:
    """The error every writer raises for a config its dialect cannot express (the caller raises it).

    >>> str(refuse("dynamic", "gguf", "llama.cpp has no dynamic NTK"))
    "method 'dynamic' cannot be written to dialect 'gguf': llama.cpp has no dynamic NTK"
    """
    return ValueError(f"method {method!r} cannot be written to dialect {dialect!r}: {reason}")


def number(name: str, value: object) -> float:
    """A finite int or float as a float. NaN and infinities are refused (no dialect means anything by them), and
    so are strings: a JSON config that quotes a number is malformed, and guessing would hide it.

    >>> number("factor", 2), number("factor", 0.5)
    (2.0, 0.5)
    """
    if isinstance(value, bool) or isinstance(value, str) or value is None:
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    if isinstance(value, (int, float)):
        try:
            out = float(value)
        except OverflowError:
            raise ValueError(f"{name} is too large for a float: {value!r}.") from None
        if not math.isfinite(out):
            raise ValueError(f"{name} must be a finite number, got {value!r}.")
        return out
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars from GGUF
        return number(name, value.item())
    raise TypeError(f"{name} must be a number, got {type(value).__name__}.")


def integer(name: str, value: object, *, minimum: int = 1) -> int:
    """An integer in ``[minimum, MAX_INT]``; integral floats (``4096.0``) are accepted, ``4096.5`` is not.

    >>> integer("max_position_embeddings", 4096.0)
    4096
    """
    if isinstance(value, int) and not isinstance(value, bool):
        out = value
    else:
        f = number(name, value)
        if not f.is_integer():
            raise ValueError(f"{name} must be an integer, got {value!r}.")
        out = int(f)
    if not minimum <= out <= MAX_INT:
        raise ValueError(f"{name} must be an integer in [{minimum}, 2**53], got {out}.")
    return out


def boolean(name: str, value: object) -> bool:
    """A real bool (JSON ``true``/``false``); strings such as ``"false"`` are refused, not read as truthy.

    >>> boolean("truncate", False)
    False
    """
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return boolean(name, value.item())
    raise TypeError(f"{name} must be true or false, got {type(value).__name__} {value!r}.")


def require(fields: Mapping[str, Any], key: str, where: str) -> Any:
    """``fields[key]``, or a ``ValueError`` saying that ``where`` needs it (absent and None alike).

    >>> require({"factor": 2.0}, "factor", "HF rope_type 'linear'")
    2.0
    """
    value = fields.get(key)
    if value is None:
        raise ValueError(f"{where} needs the key {key!r}.")
    return value


def scaling_of(cfg: RopeConfig, cls: type[S]) -> S:
    """``cfg.scaling`` as ``cls``; the registry dispatches on the method, so a mismatch is a wiring bug.

    >>> import ropekit
    >>> scaling_of(ropekit.RopeConfig(head_dim=8, scaling=ropekit.Linear(factor=2.0)), ropekit.Linear)
    Linear(factor=2.0)
    """
    if not isinstance(cfg.scaling, cls):
        raise TypeError(f"expected {cls.__name__} scaling for method {cls.method!r}, got {type(cfg.scaling).__name__}.")
    return cfg.scaling


def folded_ntk_base(cfg: RopeConfig, dialect: str) -> float:
    """The base that gives static NTK's frequencies with no scaling: ``base * alpha ** (d / (d - 2))``, the
    same expression the frequency registry evaluates, so the folded config's ``inv_freq`` is bit-identical.

    >>> import ropekit
    >>> cfg = ropekit.RopeConfig(head_dim=64, base=10000.0, scaling=ropekit.NTK(alpha=4.0))
    >>> ropekit.RopeConfig(head_dim=64, base=folded_ntk_base(cfg, "gguf")).inv_freq().equal(cfg.inv_freq())
    True
    """
    alpha, d = scaling_of(cfg, NTK).alpha, cfg.rotary_dim
    if d is None or d <= 2:
        raise refuse("ntk", dialect, f"static NTK needs rotary_dim > 2 (its exponent is d / (d - 2)), got {d}.")
    try:
        base = cfg.base * alpha ** (d / (d - 2))
    except OverflowError:
        base = math.inf
    if not math.isfinite(base) or base <= 1:
        raise refuse("ntk", dialect, f"the folded base {base} (base {cfg.base}, alpha {alpha}) is not finite and > 1.")
    return base
