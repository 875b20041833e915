"""docs/architecture.md matches the tree: the files it names exist and the imports point the way it says."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "ropekit"
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        out[".".join(rel.parts).removesuffix(".__init__")] = ast.parse(path.read_text(encoding="utf-8"))
    return out


MODULES = _modules()


def _imports(tree: ast.Module, *, top_level_only: bool) -> set[str]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_every_file_the_doc_names_exists() -> None:
    named = set(re.findall(r"`([\w/]+\.(?:py|c))(?=[`:\s])", DOC))
    assert len(named) > 20  # the pattern still finds the doc's paths
    files = {p.name for p in PKG.rglob("*") if p.is_file()}

    def exists(n: str) -> bool:  # a path from the package, src/ or the repo root; a bare name anywhere in it
        return any((base / n).exists() for base in (PKG, PKG.parent, ROOT)) or ("/" not in n and n in files)

    missing = [n for n in sorted(named) if not exists(n)]
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_core_imports_only_core_at_module_level() -> None:
    bad = {m: sorted(i for i in _imports(t, top_level_only=True) if i.startswith("ropekit") and
                     not i.startswith("ropekit.core"))
           for m, t in MODULES.items() if m.startswith("ropekit.core")}
    assert not {m: v for m, v in bad.items() if v}


def test_core_reaches_up_only_through_the_interop_delegates() -> None:
    bad = {m: sorted(i for i in _imports(t, top_level_only=False) if i.startswith("ropekit") and
                     not i.startswith(("ropekit.core", "ropekit.interop")))
           for m, t in MODULES.items() if m.startswith("ropekit.core")}
    assert not {m: v for m, v in bad.items() if v}


@pytest.mark.parametrize("upper", ["ropekit.commands", "ropekit.cli"])
def test_nothing_below_the_cli_imports_it(upper: str) -> None:
    allowed = ("ropekit.commands", "ropekit.cli", "ropekit.__main__")
    bad = [m for m, t in MODULES.items() if not m.startswith(allowed)
           and any(i == upper or i.startswith(upper + ".") for i in _imports(t, top_level_only=False))]
    assert not bad


def test_plots_is_the_only_matplotlib_import() -> None:
    users = [m for m, t in MODULES.items()
             if any(i.split(".")[0] == "matplotlib" for i in _imports(t, top_level_only=False))]
    assert users == ["ropekit.plots"]
