"""The ``ropekit`` command: a thin dispatcher over ``ropekit.commands.<name>`` modules.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``; its docstring's first
line is the help text. Modules import their heavy dependencies inside ``run``.

Errors: bad input ends in one line ``ropekit CMD: error: ...`` and exit status 2; a bug keeps its
traceback. Bad input is a ``ValueError`` or ``FileNotFoundError``, or a ``TypeError`` raised by an
explicit ``raise`` statement in ropekit code (the argument checks, see :mod:`ropekit.core.validation`).
A ``TypeError`` that Python or a library throws on an operation (``None + 1``, a wrong call) is a bug.
Telling the two apart from the traceback needs no marker class at the ~60 raise sites.
"""

from __future__ import annotations

import argparse
import dis
import importlib
import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "build_parser", "is_input_error", "main"]

#: subcommand -> module; the order is the order of `ropekit --help`.
COMMANDS = {
    "eval": "ropekit.commands.eval",
    "inspect": "ropekit.commands.inspect",
    "convert": "ropekit.commands.convert",
    "study": "ropekit.commands.study",
    "doctor": "ropekit.commands.doctor",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ropekit", description="Rotary position embeddings: inspect, convert, evaluate, study."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, modname in COMMANDS.items():
        if importlib.util.find_spec(modname) is None:
            continue
        mod = importlib.import_module(modname)
        doc = (mod.__doc__ or name).strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=(mod.__doc__ or doc).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


_RAISE = dis.opmap["RAISE_VARARGS"]


def is_input_error(exc: BaseException) -> bool:
    """Whether ``exc`` reports bad input (one line for the user) rather than a bug (a traceback).

    >>> from ropekit.core.validation import check_positive_int, check_rotary_dim
    >>> for bad in (lambda: check_positive_int("n", "8"), lambda: check_rotary_dim(None, 8)):
    ...     try:
    ...         bad()
    ...     except TypeError as e:
    ...         print(is_input_error(e))   # an argument check; then `None % 2`, a bug
    True
    False
    """
    if isinstance(exc, (ValueError, FileNotFoundError)):
        return True
    if not isinstance(exc, TypeError) or exc.__traceback__ is None:
        return False
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    # the innermost frame raised it: ropekit code, at an explicit `raise` (not an operation that failed)
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    explicit = tb.tb_frame.f_code.co_code[tb.tb_lasti] == _RAISE
    return explicit and (module == "ropekit" or module.startswith("ropekit."))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        if not is_input_error(exc):
            raise
        # bad input: one clear line, no traceback
        print(f"ropekit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
