"""The ``ropekit`` command: a thin dispatcher over ``ropekit.commands.<name>`` modules.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``; its docstring's first
line is the help text. Modules import their heavy dependencies inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        # bad input: one clear line, no traceback
        print(f"ropekit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
