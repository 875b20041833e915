"""`ropekit eval` end to end on the real bundled model (--quick), and its bad-input errors."""

from __future__ import annotations

import json
import math

import pytest

from ropekit.cli import main


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--model", "smollm-135m"], "Did you mean 'smollm2-135m'"),
        (["--methods", "none,yarm"], "Did you mean 'yarn'"),
        (["--lengths", "0"], "lengths must be positive ints"),
        (["--factor", "-2"], "factor must be a finite number > 0"),
        (["--text", "/no/such/corpus.txt"], "neither 'stdlib' nor an existing file"),
        (["--methods", "longrope"], "'longrope' needs the model's own LongRoPE"),
        (["--lengths", "100000000"], "use shorter lengths"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(argv, match, tmp_path, capsys):
    assert main(["eval", "--out", str(tmp_path / "o"), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert "ropekit eval: error:" in err
    assert __import__("re").search(match, err), err
    assert not (tmp_path / "o" / "results.json").exists() or not json.loads(
        (tmp_path / "o" / "results.json").read_text())["cells"]


def test_quick_eval_real_model(tmp_path, capsys):
    out = tmp_path / "quick"
    assert main(["eval", "--quick", "--out", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "perplexity by position, 9216-token windows" in table and "passkey" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["context"] == 8192 and set(summary["methods"]) == {"none", "yarn@2", "self-extend@2", "dca"}
    none = summary["methods"]["none"]["ppl"]["9216"]
    yarn = summary["methods"]["yarn@2"]["ppl"]["9216"]
    assert [b["label"] for b in none] == ["0k-4k", "4k-8k", "8k-9k"]
    # a real 135M LM on Python source: low perplexity inside its context; YaRN changes the numbers
    assert all(math.isfinite(b["ppl"]) for b in none + yarn) and none[0]["ppl"] < 30
    assert none[0]["ppl"] != yarn[0]["ppl"]
    assert (out / "eval.png").stat().st_size > 10_000
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert len(cells) == 4 * (1 + 8)  # 4 methods x (1 window + 8 passkey trials)
    assert "key log-probability under teacher forcing" in table
    pk = summary["methods"]["none"]["passkey"]["2048|0.98"]
    assert pk["trials"] == 8 and pk["logprob_lo95"] <= pk["logprob_per_digit"] <= pk["logprob_hi95"] <= 0
    # rerun: everything is already done, nothing is recomputed
    assert main(["eval", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text())["cells"] == cells


def test_missing_prose_genre_exits_2_naming_the_install(tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["eval", "--text", "kjv", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "apt-get install bible-kjv" in capsys.readouterr().err
