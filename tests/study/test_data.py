from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ropekit.study.data import file_split, list_sources, load_corpus, sample_batch, stdlib_root


def test_list_sources_skips_third_party_and_non_python(tiny_root: Path) -> None:
    files = list_sources(tiny_root)
    assert len(files) == 60
    assert files == sorted(files)
    assert not any("site-packages" in f for f in files)


def test_split_is_by_file_deterministic_and_disjoint(tiny_root: Path) -> None:
    a = load_corpus(tiny_root, heldout_percent=20)
    b = load_corpus(tiny_root, heldout_percent=20)
    assert a.heldout_files == b.heldout_files and torch.equal(a.train, b.train)
    assert set(a.train_files).isdisjoint(a.heldout_files)
    assert set(a.train_files) | set(a.heldout_files) == set(list_sources(tiny_root))
    assert 0 < len(a.heldout_files) < 60
    # held-out stream is exactly the held-out files, whole, each followed by the NUL separator
    want = b"".join((tiny_root / f).read_bytes() + b"\x00" for f in a.heldout_files)
    assert bytes(a.heldout.tolist()) == want
    # no held-out file's text occurs in the training stream (not the tail of a trained document)
    train_bytes = bytes(a.train.tolist())
    for f in a.heldout_files:
        assert (tiny_root / f).read_bytes() not in train_bytes


def test_split_of_a_file_does_not_depend_on_other_files() -> None:
    names = [f"m{i}.py" for i in range(500)]
    first = {n: file_split(n, 10) for n in names}
    assert {n: file_split(n, 10) for n in reversed(names)} == first
    share = sum(v == "heldout" for v in first.values()) / len(names)
    assert 0.05 < share < 0.15


def test_bad_split_arguments(tiny_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="heldout_percent"):
        file_split("a.py", 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .py files"):
        load_corpus(tmp_path / "empty")
    with pytest.raises(ValueError, match="empty split"):
        load_corpus(tiny_root, heldout_percent=0.01)


def test_stdlib_corpus_is_real_python() -> None:
    assert (stdlib_root() / "os.py").exists()
    c = load_corpus()
    assert c.train.numel() > 1_000_000 and c.heldout.numel() > 100_000
    assert b"def " in bytes(c.heldout[:200_000].tolist())


def test_sample_batch_is_a_pure_function_of_seed_and_step() -> None:
    s = torch.arange(1000, dtype=torch.int64).to(torch.uint8)
    a = sample_batch(s, 4, 16, seed=3, step=7)
    assert a.shape == (4, 17) and a.dtype == torch.int64
    assert torch.equal(a, sample_batch(s, 4, 16, seed=3, step=7))
    assert not torch.equal(a, sample_batch(s, 4, 16, seed=3, step=8))
    # rows are contiguous crops
    assert bool(((a[:, 1:] - a[:, :-1]) % 256 == 1).all())
    with pytest.raises(ValueError, match="length=2000"):
        sample_batch(s, 1, 2000, seed=0, step=0)
