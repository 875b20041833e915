"""The ``kjv`` text genre: the King James Bible as natural-language prose, from the Debian package ``bible-kjv``.

The package (``apt-get install bible-kjv``, 2.7 MB with its data package ``bible-kjv-text``) ships the
text in a compressed database and the ``bible`` program that prints it. We ask it once for every verse
(``bible -f Gen1:1-Rev22:21``: 31,102 verses, 4.4 MB) and write one document per book into the ropekit
cache (``$ROPEKIT_CACHE`` or ``~/.cache/ropekit``, under ``text/kjv-<sha of the text>``): each chapter one
paragraph of its verses joined by spaces (verse numbers dropped), chapters separated by a blank line,
books in canonical order. A book is contiguous prose, so a window never mixes books. With SmolLM2's
tokenizer the 66 books hold 993k tokens: 24 books reach 16k tokens (34 non-overlapping 16k windows in
all), 8 reach 32k (Genesis, Exodus, Numbers, Deuteronomy, Psalms, Isaiah, Jeremiah, Ezekiel: 8 windows
of 32k), the longest is Psalms with 54k.

>>> src = kjv_source()                    # doctest: +SKIP
>>> src.files[0].name                     # doctest: +SKIP
'01-Ge.txt'
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["INSTALL", "kjv_books", "kjv_source"]

INSTALL = "sudo apt-get install bible-kjv"  # what the missing-genre error tells the user to run
_ALL = "Gen1:1-Rev22:21"  # every verse, in canonical order
_VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")  # "1Sm3:10 And the LORD came, ..."
_DONE = ".complete"  # written last: a cache directory without it is rewritten


def _bible_text() -> str:
    exe = shutil.which("bible")
    if exe is None:
        raise FileNotFoundError(
            f"text='kjv' needs the King James Bible of the Debian package bible-kjv (not installed): {INSTALL}"
        )
    try:
        done = subprocess.run([exe, "-f", _ALL], capture_output=True, text=True, timeout=120, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        raise FileNotFoundError(f"text='kjv': {exe} -f {_ALL} failed ({e}); reinstall it: {INSTALL}") from e
    return done.stdout


def kjv_books(text: str) -> list[tuple[str, str]]:
    """``(abbreviation, document)`` per book from ``bible -f`` output (one ``BookC:V text`` line per verse).

    >>> kjv_books("Ge1:1 In the beginning.\\nGe1:2 And the earth.\\nGe2:1 Thus.\\nExo1:1 Now these.\\n")
    [('Ge', 'In the beginning. And the earth.\\n\\nThus.\\n'), ('Exo', 'Now these.\\n')]
    """
    books: dict[str, dict[int, list[str]]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _VERSE.match(line)
        if m is None:  # a format we do not know: refuse rather than mix reference text into the prose
            raise ValueError(f"text='kjv': unexpected line from the bible program: {line[:80]!r}")
        book, chapter, _, verse = m.groups()
        books.setdefault(book, {}).setdefault(int(chapter), []).append(verse.strip())
    return [(b, "\n\n".join(" ".join(v) for _, v in sorted(ch.items())) + "\n") for b, ch in books.items()]


def kjv_source(cache: str | Path | None = None) -> tuple[tuple[Path, ...], Path]:
    """The per-book documents (written once into the cache) and their directory; see the module doc."""
    from ropekit.eval.store import atomic_write_text
    from ropekit.models import cache_dir

    text = _bible_text()
    books = kjv_books(text)
    if len(books) != 66:
        raise ValueError(f"text='kjv': the bible program printed {len(books)} books, expected 66; reinstall: {INSTALL}")
    root = cache_dir(cache) / "text" / f"kjv-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    files = tuple(root / f"{i:02d}-{abbr}.txt" for i, (abbr, _) in enumerate(books, 1))
    if not (root / _DONE).is_file():
        for f, (_, doc) in zip(files, books, strict=True):
            atomic_write_text(f, doc)
        atomic_write_text(root / _DONE, f"{len(books)} books\n")
    return files, root
