"""Resumable results: a JSON file of finished cells, rewritten atomically after every cell.

A kill at any moment leaves either the previous or the new complete file (tmp + ``os.replace``), so a
rerun skips every cell already done and loses at most the cell in flight.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ropekit.io import atomic_write_text

__all__ = ["ResultStore", "atomic_write_text"]


class ResultStore:
    """``{"meta": {...}, "cells": {key: record}}`` persisted at ``path``.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> s = ResultStore(p); s.put("a", {"x": 1}); "a" in ResultStore(p)
    True
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.meta: dict[str, Any] = {}
        self.cells: dict[str, Any] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"results file {str(self.path)!r} is not valid JSON ({e}); move it away to start afresh."
                ) from e
            self.meta = dict(data.get("meta", {}))
            self.cells = dict(data.get("cells", {}))

    def __contains__(self, key: str) -> bool:
        return key in self.cells

    def get(self, key: str) -> Any:
        return self.cells.get(key)

    def put(self, key: str, record: Any) -> None:
        self.cells[key] = record
        self.save()

    def set_meta(self, **meta: Any) -> None:
        self.meta.update(meta)
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({"meta": self.meta, "cells": self.cells}, indent=1, sort_keys=True))
