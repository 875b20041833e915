"""Shared fixtures: a tiny on-disk corpus of .py files, so tests do not depend on the stdlib's size."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def tiny_root(tmp_path: Path) -> Path:
    """60 small "modules" in nested folders, plus files that must be skipped."""
    root = tmp_path / "lib"
    for i in range(60):
        sub = root / f"pkg{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        body = "".join(f"def f{i}_{j}(x):\n    return x * {j} + {i}\n\n" for j in range(40))
        (sub / f"mod{i}.py").write_text(f"# module {i}\n" + body)
    (root / "site-packages").mkdir()
    (root / "site-packages" / "third.py").write_text("x = 1\n")
    (root / "notes.txt").write_text("not python\n")
    return root
