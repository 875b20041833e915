"""Atomic file writes: a run killed at any instant leaves the old file or the new one, never half of one.

Every writer in ropekit (results, checkpoints, reports, plots) goes through :func:`atomic_write`: a
temporary file in the target's folder (same filesystem, so the rename is atomic), flushed to disk, given
the permissions a plain ``open()`` would, then ``os.replace``-d over the target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_save", "atomic_write", "atomic_write_bytes", "atomic_write_text"]


def _umask() -> int:
    # os.umask can only be read by setting it; restore at once
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then move it onto ``path``; returns ``path``.

    The temporary name keeps ``path``'s suffix, so writers that pick a format by extension
    (``savefig``) see the right one. On any error the temporary file is removed and ``path`` untouched.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a" / "b.txt"
    >>> atomic_write(p, lambda tmp: tmp.write_text("hi")).read_text()
    'hi'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:  # the bytes reach the disk before the rename makes them visible
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; the result is an ordinary file
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> atomic_write_text(p, "{}").read_text()
    '{}'
    """
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically.

    >>> import tempfile, os
    >>> atomic_write_bytes(os.path.join(tempfile.mkdtemp(), "x.bin"), b"ab").read_bytes()
    b'ab'
    """
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints).

    >>> import tempfile, os, torch
    >>> p = atomic_save({"w": torch.ones(2)}, os.path.join(tempfile.mkdtemp(), "ck.pt"))
    >>> torch.load(p)["w"].tolist()
    [1.0, 1.0]
    """
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
