"""Argument types shared by the ``ropekit`` subcommands: one parser per kind of comma list."""

from __future__ import annotations

import argparse

__all__ = ["floats", "ints", "names"]


def _items(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def ints(text: str) -> tuple[int, ...]:
    """Comma-separated ints; ``k`` means x1024 (token counts: ``8k`` = 8192, ``1.5k`` = 1536).

    >>> ints("16384, 8k,1.5K")
    (16384, 8192, 1536)
    """
    out = []
    for x in _items(text):
        x = x.lower()
        try:
            out.append(int(float(x[:-1]) * 1024) if x.endswith("k") else int(x))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated integers or token counts (e.g. 16384,8k), got {text!r}"
            ) from None
    return tuple(out)


def floats(text: str) -> tuple[float, ...]:
    """Comma-separated numbers.

    >>> floats("1,2.5")
    (1.0, 2.5)
    """
    try:
        return tuple(float(x) for x in _items(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def names(text: str) -> tuple[str, ...]:
    """Comma-separated names, blanks dropped.

    >>> names("yarn, ntk,")
    ('yarn', 'ntk')
    """
    return tuple(_items(text))
