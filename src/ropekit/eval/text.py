"""Long real documents that exist offline on every machine, cut into token windows.

Genres (:data:`GENRES`, by name; a path that is not a genre name is a text file or directory of them):

- ``"stdlib"`` (default, nothing to install): the ``.py`` sources of Python's standard library
  (``sysconfig.get_paths()["stdlib"]``), each file one document, in sorted relative-path order (test
  packages, ``site-packages`` and the machine-generated ``_sysconfigdata*`` excluded). Numbers therefore
  depend on the Python version's stdlib; the JSON records every window's token fingerprint.
- ``"kjv"``: natural-language prose, the King James Bible from the Debian package ``bible-kjv``
  (one document per book, see :mod:`ropekit.eval.kjv`); missing package: ``FileNotFoundError`` naming
  the install command. Write ``./kjv`` for a directory of that name.

Windows are non-overlapping and never cross a document boundary: the first window of every document that
is long enough, then the second windows, and so on, so a few windows already span several documents.
A tokenizer that starts every text with special tokens (Gemma's ``<bos>``) gets them at the start of every
window too (the window then holds ``length - len(prefix)`` document tokens): Gemma without ``<bos>``
scores about 6.2 instead of 4.6 perplexity on Python source even 500 tokens in, measured here.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["GENRES", "TextSource", "Window", "list_documents", "resolve_text", "special_prefix", "token_windows"]

_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
_TEXT_SUFFIXES = {".txt", ".py", ".md", ".rst", ".tex", ".c", ".h"}


@dataclass(frozen=True)
class TextSource:
    """A named corpus: an ordered list of document files."""

    name: str
    files: tuple[Path, ...]
    root: Path


@dataclass(frozen=True)
class Window:
    """``ids``: ``(length,)`` int64 tokens from one document (``doc`` is its path relative to the corpus)."""

    doc: str
    start: int
    ids: torch.Tensor

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.ids.numpy().tobytes()).hexdigest()[:16]


def _walk(root: Path, suffixes: set[str]) -> tuple[Path, ...]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for f in filenames:
            if Path(f).suffix in suffixes and not f.startswith("_sysconfigdata"):
                out.append(Path(dirpath) / f)
    return tuple(sorted(out, key=lambda p: p.relative_to(root).as_posix()))


def _stdlib() -> TextSource:
    root = Path(sysconfig.get_paths()["stdlib"])
    return TextSource("stdlib", _walk(root, {".py"}), root)


def _kjv() -> TextSource:
    from ropekit.eval.kjv import kjv_source

    files, root = kjv_source()
    return TextSource("kjv", files, root)


#: text genres by name (see the module doc); each builds its TextSource when asked, never at import
GENRES: dict[str, Callable[[], TextSource]] = {"stdlib": _stdlib, "kjv": _kjv}


def resolve_text(text: str | os.PathLike[str] = "stdlib") -> TextSource:
    """A genre of :data:`GENRES` (``"stdlib"``, ``"kjv"``), a text file, or a directory of text files (recursive).

    >>> src = resolve_text("stdlib")
    >>> len(src.files) > 100
    True
    """
    if not isinstance(text, (str, os.PathLike)):
        raise TypeError(f"text must be a genre name ({', '.join(GENRES)}) or a path, got {type(text).__name__}.")
    if isinstance(text, str) and text in GENRES:
        return GENRES[text]()
    path = Path(os.fspath(text)).expanduser()
    if path.is_file():
        return TextSource(path.name, (path,), path.parent)
    if path.is_dir():
        files = _walk(path, _TEXT_SUFFIXES)
        if not files:
            raise ValueError(f"text={str(path)!r} contains no text files ({sorted(_TEXT_SUFFIXES)}).")
        return TextSource(path.name, files, path)
    raise FileNotFoundError(
        f"text={os.fspath(text)!r} is neither 'stdlib' nor an existing file or directory (genres: {', '.join(GENRES)})."
    )


def list_documents(source: TextSource, min_chars: int = 0) -> list[Path]:
    """Documents with at least ``min_chars`` bytes (a cheap pre-filter before tokenizing)."""
    return [f for f in source.files if f.stat().st_size >= min_chars]


def special_prefix(tokenizer: Any) -> list[int]:
    """The special tokens the tokenizer puts before every text (``[bos]`` for Gemma, ``[]`` for SmolLM2).

    Found by comparing an encoding with and without special tokens, so it follows the tokenizer's own setting.
    """
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return list(full[:i])
    return []


def token_windows(tokenizer: Any, source: TextSource, length: int, n_windows: int) -> list[Window]:
    """``n_windows`` non-overlapping windows of ``length`` tokens (see module doc for the order).

    Raises ``ValueError`` when the corpus holds fewer windows of that length.
    """
    if length < 2:
        raise ValueError(f"length must be >= 2 tokens, got {length}.")
    if n_windows < 1:
        raise ValueError(f"n_windows must be >= 1, got {n_windows}.")
    # ~2 bytes/token is a safe lower bound for code and prose, so shorter files cannot hold a window.
    prefix = torch.tensor(special_prefix(tokenizer), dtype=torch.long)
    body = length - prefix.numel()  # document tokens per window
    if body < 1:
        raise ValueError(f"length={length} leaves no room for text after the {prefix.numel()} special prefix tokens.")
    candidates = list_documents(source, min_chars=2 * length) or list(source.files)
    per_doc: list[tuple[str, torch.Tensor]] = []
    for f in candidates:
        text = f.read_text(encoding="utf-8", errors="replace")
        ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
        if ids.numel() >= body:
            per_doc.append((f.relative_to(source.root).as_posix(), ids))
        # the first windows only need enough documents; later rounds use the same documents again
        if len(per_doc) >= n_windows:
            break
    windows: list[Window] = []
    round_ = 0
    while len(windows) < n_windows:
        added = False
        for doc, ids in per_doc:
            start = round_ * body
            if start + body <= ids.numel() and len(windows) < n_windows:
                windows.append(Window(doc, start, torch.cat([prefix, ids[start : start + body]])))
                added = True
        if not added:
            break
        round_ += 1
    if len(windows) < n_windows:
        raise ValueError(
            f"text {source.name!r} yields only {len(windows)} non-overlapping windows of {length} tokens, "
            f"{n_windows} requested; pass a longer text or fewer windows."
        )
    return windows
