"""The eval grid runner: validation before any work, resumability, summaries (tiny local model)."""

from __future__ import annotations

import json

import pytest

from ropekit.eval import runner
from ropekit.eval.runner import EvalPlan, prepare, run_plan, summarize
from tests.patching.tiny import save_tiny_dir


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_dir(tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture
def doc(tmp_path):
    f = tmp_path / "doc.txt"
    f.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(200)))
    return f


def plan(tiny_dir, doc, out, **kw):
    base = dict(model=str(tiny_dir), methods=("none", "yarn", "dynamic"), lengths=(96,), windows=2,
                passkey_lengths=(300,), passkey_depths=(0.0, 1.0), passkey_trials=1, text=str(doc), out=str(out),
                device="cpu")
    base.update(kw)
    return EvalPlan(**base)


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        (dict(methods=("yarm",)), ValueError, "method='yarm' is not one of .*Did you mean 'yarn'"),
        (dict(methods=()), ValueError, "at least one method"),
        (dict(factors=(0.0,)), ValueError, "factor must be a finite number > 0"),
        (dict(lengths=(0,)), ValueError, "lengths must be positive ints"),
        (dict(lengths=(-5,)), ValueError, "lengths must be positive ints"),
        (dict(passkey_lengths=(10,)), ValueError, "passkey_lengths must be >= 128"),
        (dict(passkey_depths=(1.5,)), ValueError, r"depths must be in \[0, 1\]"),
        (dict(windows=-1), ValueError, "windows must be an int >= 0"),
        (dict(model="smollm-135"), ValueError, "not a known model name"),
        (dict(text="/nonexistent/corpus.txt"), FileNotFoundError, "neither 'stdlib' nor an existing file"),
        (dict(methods=("longrope",)), ValueError, "'longrope' needs the model's own LongRoPE"),
        (dict(lengths=(10**9,)), ValueError, "needs about .* GiB .* use shorter lengths"),
        (dict(windows=5000), ValueError, "yields only .* windows"),
        (dict(device="cuda:3"), ValueError, "device|CUDA"),
    ],
)
def test_bad_input_fails_before_any_cell_runs(tiny_dir, doc, tmp_path, monkeypatch, kw, exc, match):
    monkeypatch.setattr(runner, "_cells", lambda p: pytest.fail("work started before validation finished"))
    with pytest.raises(exc, match=match):
        p = prepare(plan(tiny_dir, doc, tmp_path / "out", **kw))
        run_plan(p, progress=False)


def test_run_resume_and_summary(tiny_dir, doc, tmp_path, monkeypatch):
    out = tmp_path / "out"
    p = prepare(plan(tiny_dir, doc, out))
    cells = runner._cells(p)
    assert len(cells) == 3 * 2 + 3 * 2  # (methods x windows) + (methods x depths x trials)

    # kill the run after 4 cells: those 4 are on disk, nothing else
    from ropekit.eval import store as store_mod

    real_put, calls = store_mod.ResultStore.put, []

    def put_then_die(self, key, rec):
        real_put(self, key, rec)
        calls.append(key)
        if len(calls) == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(store_mod.ResultStore, "put", put_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_plan(p, progress=False)
    monkeypatch.undo()
    done = json.loads((out / "results.json").read_text())["cells"]
    assert sorted(done) == sorted(calls)

    # rerun: only the missing cells are computed, finished ones are kept untouched
    rerun_keys = []
    monkeypatch.setattr(store_mod.ResultStore, "put", lambda self, k, r: (rerun_keys.append(k), real_put(self, k, r)))
    store = run_plan(p, progress=False)
    assert sorted(rerun_keys) == sorted(k for k, _, _ in cells if k not in done)
    assert all(store.get(k) == v for k, v in done.items())

    summary = summarize(p, store)
    assert set(summary["methods"]) == {"none", "yarn@2", "dynamic@2"}
    buckets = summary["methods"]["yarn@2"]["ppl"]["96"]
    assert [(b["lo"], b["hi"]) for b in buckets] == [(0, 32), (32, 64), (64, 96)]  # L=64: 0-½L, ½L-L, L-1.5L
    assert all(b["windows"] == 2 and b["lo95"] <= b["ppl"] <= b["hi95"] for b in buckets)
    pk = summary["methods"]["none"]["passkey"]
    assert set(pk) == {"300|0", "300|1"} and all(c["trials"] == 1 and 0 <= c["lo95"] <= c["hi95"] <= 1
                                                  for c in pk.values())
    assert summary["methods"]["none"]["ppl"]["96"] != summary["methods"]["yarn@2"]["ppl"]["96"]

    # a third run has nothing to do
    monkeypatch.setattr(store_mod.ResultStore, "put", lambda *a: pytest.fail("finished cell recomputed"))
    run_plan(p, progress=False)


def test_results_of_another_model_are_not_mixed(tiny_dir, doc, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"meta": {"model": "other"}, "cells": {}}))
    p = prepare(plan(tiny_dir, doc, out, passkey_trials=0))
    with pytest.raises(ValueError, match="holds results for model 'other'"):
        run_plan(p, progress=False)
