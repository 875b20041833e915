"""The method x dialect registry: for every scaling method and every dialect, its reader and writer.

Each dialect module (:mod:`~ropekit.interop.hf`, :mod:`~ropekit.interop.gguf`,
:mod:`~ropekit.interop.llama_cpp`, :mod:`~ropekit.interop.vllm`) holds one reader and one writer function
per method; its public ``to_*`` / ``from_*`` functions dispatch through :func:`writer` and :func:`reader`
here. The registry fails closed: a method with no entry, or whose entry has no writer, raises
``ValueError`` naming the method, the dialect and what that dialect does write. There is no default branch,
so a new scaling class cannot be written lossily by accident.

Where a dialect expresses a config exactly in another form, the entry says so in ``note`` (see :func:`notes`):
static NTK is a pure base change, so llama.cpp flags and GGUF get the folded base.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ropekit.core.config import RopeConfig
from ropekit.core.validation import check_choice
from ropekit.interop import gguf, gguf_write, hf, llama_cpp, vllm

__all__ = ["DIALECTS", "Codec", "Table", "codec", "notes", "reader", "writer", "written_methods"]

R = TypeVar("R", bound=Callable[..., Any])
W = TypeVar("W", bound=Callable[..., Any])


@dataclass(frozen=True, kw_only=True)
class Codec(Generic[R, W]):
    """One (method, dialect) cell of the registry."""

    read: R | None  # dialect fields -> this method's scaling; None: the dialect never names the method
    write: W | None  # config -> the dialect's fields; None: refused, and `refused` says why
    refused: str = ""  # why there is no writer: where that engine keeps the information instead, if anywhere
    note: str = ""  # non-empty when `write` uses another exact form (the reader then returns that form)

    def __post_init__(self) -> None:
        if (self.write is None) != bool(self.refused):
            raise ValueError("a Codec has either a writer or a refusal reason, exactly one of them.")


_NO_NTK_KEY = ("static NTK is a pure base change; ropekit folds it into the base: base * alpha ** (d / (d - 2)) "
               "(exact, equal inv_freq); the reader returns {form}")
_NO_DYNAMIC = "GGUF/llama.cpp cannot express DynamicNTK scaling: llama.cpp has no dynamic NTK"
_NO_PROPORTIONAL = "GGUF/llama.cpp cannot express Proportional scaling: llama.cpp has no proportional (p-RoPE) rotary"

#: dialect -> method -> Codec. Every method ropekit has (``"default"`` and each ``Scaling.method``) appears once
#: per dialect; a missing cell is refused like a cell without writer.
DIALECTS: dict[str, dict[str, Codec[Any, Any]]] = {
    "hf": {
        "default": Codec(read=hf._read_default, write=hf._write_default),
        "linear": Codec(read=hf._read_linear, write=hf._write_linear),
        "ntk": Codec(read=hf._read_ntk, write=None, refused=(
            "HF has no generic static-NTK rope_type (HunYuan's 'dynamic'+'alpha' is model code); fold it into the "
            "base with cfg.replace(base=cfg.base * alpha ** (d / (d - 2)), scaling=None), or use to_vllm().")),
        "dynamic": Codec(read=hf._read_dynamic, write=hf._write_dynamic),
        "yarn": Codec(read=hf._read_yarn, write=hf._write_yarn),
        "longrope": Codec(read=hf._read_longrope, write=hf._write_longrope),
        "llama3": Codec(read=hf._read_llama3, write=hf._write_llama3),
        "proportional": Codec(read=hf._read_proportional, write=hf._write_proportional),
    },
    "gguf": {
        "default": Codec(read=gguf._read_default, write=gguf_write._write_default),
        "linear": Codec(read=gguf._read_linear, write=gguf_write._write_linear),
        "ntk": Codec(read=gguf._read_ntk, write=gguf_write._write_ntk, note=_NO_NTK_KEY.format(
            form="NTK again from the {arch}.rope.ropekit.* keys")),
        "dynamic": Codec(read=None, write=None, refused=_NO_DYNAMIC),
        "yarn": Codec(read=gguf._read_yarn, write=gguf_write._write_yarn),
        "longrope": Codec(read=gguf._read_longrope, write=gguf_write._write_longrope),
        "llama3": Codec(read=gguf._read_llama3, write=gguf_write._write_llama3),
        "proportional": Codec(read=None, write=None, refused=_NO_PROPORTIONAL),
    },
    "llama.cpp": {
        "default": Codec(read=llama_cpp._read_default, write=llama_cpp._write_default),
        "linear": Codec(read=llama_cpp._read_linear, write=llama_cpp._write_linear),
        "ntk": Codec(read=None, write=llama_cpp._write_ntk, note=_NO_NTK_KEY.format(
            form="'default' with the folded base (flags have no place for the alpha)")),
        "dynamic": Codec(read=None, write=None, refused="llama.cpp flags cannot express 'dynamic' scaling; "
                         "llama.cpp has no dynamic NTK"),
        "yarn": Codec(read=llama_cpp._read_yarn, write=llama_cpp._write_yarn),
        "longrope": Codec(read=None, write=None, refused="llama.cpp flags cannot express 'longrope' scaling; "
                          "llama.cpp carries it in the GGUF tensors rope_factors_long/short"),
        "llama3": Codec(read=None, write=None, refused="llama.cpp flags cannot express 'llama3' scaling; llama.cpp "
                        "carries it in the GGUF tensor rope_freqs (see ropekit.interop.gguf_write.to_gguf_tensors)"),
        "proportional": Codec(read=None, write=None, refused="llama.cpp flags cannot express 'proportional' "
                              "scaling (no proportional rotary in llama.cpp)"),
    },
    "vllm": {
        "default": Codec(read=vllm._read_default, write=vllm._write_default),
        "linear": Codec(read=vllm._read_linear, write=vllm._write_linear),
        "ntk": Codec(read=vllm._read_ntk, write=vllm._write_ntk),
        "dynamic": Codec(read=None, write=None, refused=(
            "vLLM's 'dynamic' freezes the base at L0 * factor (static NTK with alpha = s^2 - s + 1), it never grows "
            "it per sequence as HF does; convert deliberately with cfg.replace(scaling=ropekit.NTK(alpha=...)).")),
        "yarn": Codec(read=vllm._read_yarn, write=vllm._write_yarn),
        "longrope": Codec(read=vllm._read_longrope, write=vllm._write_longrope),
        "llama3": Codec(read=vllm._read_llama3, write=vllm._write_llama3),
        "proportional": Codec(read=None, write=None, refused=(
            "ropekit does not write vLLM's Gemma-4 proportional rope (its semantics are unverified).")),
    },
}


#: the shape of :data:`DIALECTS`; the lookups take another table for tests and experiments.
Table = Mapping[str, Mapping[str, Codec[Any, Any]]]


def codec(method: str, dialect: str, table: Table | None = None) -> Codec[Any, Any]:
    """The registry cell for ``method`` in ``dialect`` (``table`` defaults to :data:`DIALECTS`).

    >>> codec("ntk", "llama.cpp").note.startswith("static NTK is a pure base change")
    True
    """
    table = DIALECTS if table is None else table
    check_choice("dialect", dialect, table)
    cell = table[dialect].get(method) if isinstance(method, str) else None
    if cell is None:
        raise ValueError(f"method {method!r} cannot be written to dialect {dialect!r}: the registry "
                         f"(ropekit.interop.dialects.DIALECTS) has no entry for it. Dialect {dialect!r} writes "
                         f"{written_methods(dialect, table)}.")
    return cell


def written_methods(dialect: str, table: Table | None = None) -> list[str]:
    """The methods ``dialect`` has a writer for.

    >>> written_methods("llama.cpp")
    ['default', 'linear', 'ntk', 'yarn']
    """
    table = DIALECTS if table is None else table
    check_choice("dialect", dialect, table)
    return sorted(m for m, c in table[dialect].items() if c.write is not None)


def writer(method: str, dialect: str, table: Table | None = None) -> Any:
    """The writer for ``method`` in ``dialect``, or ``ValueError`` naming both and what the dialect writes.

    >>> writer("dynamic", "gguf")
    Traceback (most recent call last):
    ...
    ValueError: method 'dynamic' cannot be written to dialect 'gguf': GGUF/llama.cpp cannot express DynamicNTK \
scaling: llama.cpp has no dynamic NTK. Dialect 'gguf' writes ['default', 'linear', 'llama3', 'longrope', 'ntk', 'yarn'].
    """
    cell = codec(method, dialect, table)
    if cell.write is None:
        raise ValueError(f"method {method!r} cannot be written to dialect {dialect!r}: {cell.refused}. "
                         f"Dialect {dialect!r} writes {written_methods(dialect, table)}.")
    return cell.write


def reader(method: str, dialect: str, table: Table | None = None) -> Any:
    """The reader that builds ``method``'s scaling from ``dialect``'s fields (``ValueError`` when it has none).

    >>> reader("linear", "hf")({"factor": 2.0}, {})
    Linear(factor=2.0)
    """
    table = DIALECTS if table is None else table
    check_choice("dialect", dialect, table)
    cell = table[dialect].get(method)
    if cell is None or cell.read is None:
        raise ValueError(f"method {method!r} cannot be read from dialect {dialect!r}: the registry has no reader "
                         f"for it (readers: {sorted(m for m, c in table[dialect].items() if c.read is not None)}).")
    return cell.read


def notes(cfg: RopeConfig, dialect: str) -> list[str]:
    """What the writer for ``cfg`` in ``dialect`` says about the form it writes (empty when it is the
    method's own form). ``ropekit convert`` prints these; a flag list has no room for comments.

    >>> import ropekit
    >>> notes(ropekit.RopeConfig(head_dim=64, scaling=ropekit.NTK(alpha=4.0)), "llama.cpp")[0][:36]
    'static NTK is a pure base change; ro'
    """
    if not isinstance(cfg, RopeConfig):
        raise TypeError(f"cfg must be a ropekit.RopeConfig, got {type(cfg).__name__}.")
    note = codec(cfg.method, dialect).note
    return [note] if note else []
