"""Statistics, the atomic/resumable store, and the offline text corpus."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from ropekit.eval.stats import block_bootstrap_ppl, bootstrap_mean, wilson_interval
from ropekit.eval.store import ResultStore, atomic_write_text
from ropekit.eval.text import resolve_text, token_windows
from tests.patching.tiny import byte_tokenizer


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [(0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (1, 1, 0.2065, 1.0)],
)
def test_wilson_known_values(k, n, lo, hi):
    a, b = wilson_interval(k, n)
    assert a == pytest.approx(lo, abs=1e-4) and b == pytest.approx(hi, abs=1e-4)


def test_wilson_errors():
    with pytest.raises(ValueError, match="0 <= successes <= trials"):
        wilson_interval(3, 2)


def test_block_bootstrap():
    sums, counts = [2.0, 2.5, 3.0, 1.5, 4.0], [10, 10, 10, 10, 10]
    ppl, lo, hi = block_bootstrap_ppl(sums, counts, n_boot=500)
    assert ppl == pytest.approx(math.exp(13.0 / 50))
    assert lo < ppl < hi
    assert block_bootstrap_ppl(sums, counts, n_boot=500) == (ppl, lo, hi)  # seeded: reproducible
    flat = block_bootstrap_ppl([1.0] * 8, [4] * 8)
    assert flat[1] == pytest.approx(flat[2])  # identical blocks: no spread
    with pytest.raises(ValueError, match="equally long"):
        block_bootstrap_ppl([1.0], [1, 2])
    with pytest.raises(ValueError, match="count must be >= 1"):
        block_bootstrap_ppl([1.0, 1.0], [1, 0])


def test_bootstrap_mean():
    vals = [-0.1, -0.3, -2.0, -0.2, -0.05, -1.1, -0.4, -0.6]
    m, lo, hi = bootstrap_mean(vals)
    assert m == pytest.approx(sum(vals) / 8) and min(vals) < lo < m < hi < max(vals)
    assert bootstrap_mean(vals) == (m, lo, hi) and bootstrap_mean(vals, seed=1) != (m, lo, hi)  # seeded
    # the interval is the spread of the mean: about sd / sqrt(n) wide on each side, narrower with more trials
    sd = torch.tensor(vals, dtype=torch.float64).std().item()
    assert 0.5 * 1.96 * sd / 8**0.5 < (hi - lo) / 2 < 1.5 * 1.96 * sd / 8**0.5
    _, lo4, hi4 = bootstrap_mean(vals * 4)
    assert hi4 - lo4 < hi - lo
    assert bootstrap_mean([-0.5]) == (-0.5, -0.5, -0.5) and bootstrap_mean([-1.0] * 5)[1:] == (-1.0, -1.0)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_mean([])
    with pytest.raises(ValueError, match="must be finite"):
        bootstrap_mean([-1.0, float("-inf")])
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        bootstrap_mean([1.0, 2.0], level=95)


def test_store_atomic_and_resumable(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    s = ResultStore(p)
    s.set_meta(model="m")
    s.put("a", {"x": 1})
    assert json.loads(p.read_text())["cells"] == {"a": {"x": 1}}

    def crash(src, dst):  # a kill between writing the tmp file and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        s.put("b", {"x": 2})
    monkeypatch.undo()
    again = ResultStore(p)
    assert "a" in again and "b" not in again and again.meta == {"model": "m"}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # no tmp litter
    p.write_text("{trunc")
    with pytest.raises(ValueError, match="not valid JSON"):
        ResultStore(p)
    atomic_write_text(tmp_path / "sub" / "t.txt", "hi")
    assert (tmp_path / "sub" / "t.txt").read_text() == "hi"


def test_stdlib_corpus_windows_are_deterministic_and_disjoint():
    src = resolve_text("stdlib")
    rel = [f.relative_to(src.root).as_posix() for f in src.files]
    assert rel == sorted(rel) and not any("/test/" in f or f.startswith("test/") for f in rel)
    assert not any(f.rsplit("/", 1)[-1].startswith("_sysconfigdata") for f in rel)
    tok = byte_tokenizer()
    ws = token_windows(tok, src, 4096, 3)
    again = token_windows(tok, src, 4096, 3)
    assert [w.sha for w in ws] == [w.sha for w in again]
    assert all(w.ids.shape == (4096,) and w.ids.dtype == torch.long for w in ws)
    assert len({w.doc for w in ws}) == 3  # several documents, one window each
    text = (src.root / ws[0].doc).read_text(encoding="utf-8", errors="replace")
    assert tok.decode(ws[0].ids) == text.encode()[: 4096].decode("utf-8", errors="ignore")[: len(tok.decode(ws[0].ids))]


def test_text_file_and_errors(tmp_path):
    f = tmp_path / "doc.txt"
    f.write_text("abcdefgh" * 100)
    ws = token_windows(byte_tokenizer(), resolve_text(str(f)), 200, 4)
    assert [w.start for w in ws] == [0, 200, 400, 600] and {w.doc for w in ws} == {"doc.txt"}
    with pytest.raises(ValueError, match="yields only 4 non-overlapping windows of 200 tokens, 5 requested"):
        token_windows(byte_tokenizer(), resolve_text(str(f)), 200, 5)
    with pytest.raises(FileNotFoundError, match="neither 'stdlib' nor an existing file"):
        resolve_text(str(tmp_path / "missing.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="contains no text files"):
        resolve_text(str(tmp_path / "empty"))
