"""The prose genre ``kjv`` (King James Bible from the Debian package bible-kjv) and its missing-package error."""

from __future__ import annotations

import os
import shutil

import pytest

from ropekit.eval import kjv
from ropekit.eval.text import GENRES, resolve_text, token_windows

needs_bible = pytest.mark.skipif(
    shutil.which("bible") is None and not os.environ.get("CI"),
    reason="bible-kjv is not installed (apt-get install bible-kjv); CI installs it, so there this test runs",
)


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"text='kjv' needs .* bible-kjv .*apt-get install bible-kjv"):
        resolve_text("kjv")
    assert list(GENRES) == ["stdlib", "kjv"]


def test_books_parse_and_refuse_unknown_lines():
    books = kjv.kjv_books("1Sm1:1 Now there was.\n1Sm1:2 And he had.\n1Sm2:1 And Hannah.\nRev22:21 Amen.\n")
    assert books == [("1Sm", "Now there was. And he had.\n\nAnd Hannah.\n"), ("Rev", "Amen.\n")]
    with pytest.raises(ValueError, match="unexpected line"):
        kjv.kjv_books("Chapter one\n")


@needs_bible
def test_kjv_genre_loads_and_holds_long_prose_windows(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from ropekit.models import hf_directory, resolve_model

    tok = AutoTokenizer.from_pretrained(hf_directory(resolve_model("smollm2-135m")))  # before the cache moves
    monkeypatch.setenv("ROPEKIT_CACHE", str(tmp_path))
    src = resolve_text("kjv")
    again = resolve_text("kjv")  # the second call reads the cache written by the first
    assert src.name == "kjv" and len(src.files) == 66 and src.files == again.files
    assert src.files[0].name == "01-Ge.txt" and src.files[-1].name == "66-Rev.txt"
    genesis = src.files[0].read_text()
    assert genesis.startswith("In the beginning God created the heaven and the earth. And the earth was")
    assert genesis.count("\n\n") == 49  # 50 chapters, one paragraph each, no verse numbers
    ws = token_windows(tok, src, 32768, 4)  # 32k tokens of one book per window, 4 different books
    assert len({w.doc for w in ws}) == 4 and all(w.ids.numel() == 32768 for w in ws)
    assert "LORD" in tok.decode(ws[0].ids[:2000])
