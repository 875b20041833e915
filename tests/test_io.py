"""Atomic writes: the target holds the old or the new content, never a partial one, and no temp file stays."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from ropekit.io import atomic_save, atomic_write, atomic_write_bytes, atomic_write_text


def test_writes_create_folders_and_ordinary_permissions(tmp_path):
    p = atomic_write_text(tmp_path / "a" / "b.json", "{}")
    assert p.read_text() == "{}"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
    assert atomic_write_bytes(tmp_path / "x.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    ck = atomic_save({"w": torch.arange(3)}, tmp_path / "ck.pt")
    assert torch.equal(torch.load(ck)["w"], torch.arange(3))
    assert sorted(f.name for f in tmp_path.rglob("*") if f.name.startswith(".")) == []


def test_a_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_text(p, "old")

    def half(tmp):  # type: ignore[no-untyped-def]
        tmp.write_text("ne")
        raise KeyboardInterrupt  # a kill mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, half)
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]


def test_temp_name_keeps_the_suffix(tmp_path):
    seen = []
    atomic_write(tmp_path / "plot.png", lambda tmp: seen.append(tmp.suffix) or tmp.write_bytes(b"x"))
    assert seen == [".png"]


def test_plots_save_through_it(tmp_path):
    pytest.importorskip("matplotlib")
    from ropekit import plots

    plt = plots._pyplot()
    fig = plt.figure()
    out = plots._save(plt, fig, tmp_path / "f.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in tmp_path.iterdir()] == ["f.png"]
    assert not plt.fignum_exists(fig.number)
