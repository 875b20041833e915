"""Atomic writes: a study interrupted at any instant leaves either the old file or the new one, never half."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ropekit.io import atomic_save, atomic_write_text

__all__ = ["atomic_save", "read_json", "write_json"]


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write JSON atomically (tmp + ``os.replace``)."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, or ``None`` when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    return json.loads(path.read_text())
