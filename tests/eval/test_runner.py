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
        (dict(passkey_reuse="yes"), TypeError, "passkey_reuse must be True or False"),
        (dict(text="prose"), FileNotFoundError, r"genres: stdlib, kjv"),
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


def _die_after_puts(monkeypatch, n):
    """Make ``ResultStore.put`` raise KeyboardInterrupt right after its ``n``-th write (a killed run);
    returns the real ``put`` and the list of keys written."""
    from ropekit.eval import store as store_mod

    real_put, calls = store_mod.ResultStore.put, []

    def put_then_die(self, key, rec):
        real_put(self, key, rec)
        calls.append(key)
        if len(calls) == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(store_mod.ResultStore, "put", put_then_die)
    return real_put, calls


def test_run_resume_and_summary(tiny_dir, doc, tmp_path, monkeypatch):
    out = tmp_path / "out"
    p = prepare(plan(tiny_dir, doc, out))
    cells = runner._cells(p)
    assert len(cells) == 3 * 2 + 3 * 2  # (methods x windows) + (methods x depths x trials)

    # kill the run after 4 cells: those 4 are on disk, nothing else
    from ropekit.eval import store as store_mod

    real_put, calls = _die_after_puts(monkeypatch, 4)
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
    assert all(c["logprob_lo95"] == c["logprob_per_digit"] == c["logprob_hi95"] < 0 for c in pk.values())
    assert summary["methods"]["none"]["ppl"]["96"] != summary["methods"]["yarn@2"]["ppl"]["96"]

    # a third run has nothing to do
    monkeypatch.setattr(store_mod.ResultStore, "put", lambda *a: pytest.fail("finished cell recomputed"))
    run_plan(p, progress=False)


def test_passkey_trials_resume_inside_a_group_and_summarise_with_cis(tiny_dir, doc, tmp_path, monkeypatch):
    from ropekit.eval import store as store_mod

    kw = dict(methods=("none", "yarn"), windows=0, passkey_depths=(0.5,), passkey_trials=4)
    p = prepare(plan(tiny_dir, doc, tmp_path / "out", **kw))
    keys = [k for k, _, _ in runner._cells(p)]
    assert keys[:4] == [f"passkey|none|len300|d0.5|t{t}" for t in range(4)]  # trials of a group run together
    real_put, _ = _die_after_puts(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_plan(p, progress=False)
    monkeypatch.undo()
    store = run_plan(p, progress=False)  # the remaining two trials prefill the shared prefix again
    whole = run_plan(prepare(plan(tiny_dir, doc, tmp_path / "out2", **kw)), progress=False)
    for k in keys:
        a, b = store.get(k), whole.get(k)
        assert (a["key"], a["answer"], a["key_logprob"]) == (b["key"], b["answer"], pytest.approx(b["key_logprob"]))
    assert "prefix_seconds" in store.get(keys[2]) and all(store.get(k)["peak_gib"] > 0 for k in keys)
    cell = summarize(p, store)["methods"]["yarn@2"]["passkey"]["300|0.5"]
    scores = [store.get(f"passkey|yarn@2|len300|d0.5|t{t}")["key_logprob_per_digit"] for t in range(4)]
    assert cell["trials"] == 4 and cell["logprob_per_digit"] == pytest.approx(sum(scores) / 4)
    assert min(scores) <= cell["logprob_lo95"] < cell["logprob_hi95"] <= max(scores)

    # a record of an older ropekit (no teacher-forced score) is recomputed; full-prefill cells are keyed apart
    store.cells[keys[0]].pop("key_logprob")
    store.save()
    rerun = []
    monkeypatch.setattr(store_mod.ResultStore, "put", lambda self, k, r: (rerun.append(k), real_put(self, k, r)))
    run_plan(p, progress=False)
    assert rerun == [keys[0]]
    full = prepare(plan(tiny_dir, doc, tmp_path / "out", passkey_reuse=False, **kw))
    assert all(k.endswith("|full") for k, _, _ in runner._cells(full))


def test_results_of_another_model_are_not_mixed(tiny_dir, doc, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"meta": {"model": "other"}, "cells": {}}))
    p = prepare(plan(tiny_dir, doc, out, passkey_trials=0))
    with pytest.raises(ValueError, match="holds results for model 'other'"):
        run_plan(p, progress=False)


@pytest.fixture(scope="module")
def tiny_gemma_dir(tmp_path_factory):
    """A tiny random Gemma-3 text model (6 layers: 5 sliding, 1 global) with the byte tokenizer."""
    import torch
    import transformers

    from tests.eval.test_methods import gemma_config
    from tests.patching.tiny import VOCAB, byte_tokenizer

    torch.manual_seed(0)
    model = transformers.Gemma3ForCausalLM(gemma_config(num_hidden_layers=6, max_position_embeddings=64)).eval()
    model.config.eos_token_id = VOCAB - 4
    path = tmp_path_factory.mktemp("g") / "tiny-gemma"
    model.save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    return path


def test_per_layer_type_model_gets_the_layered_grid(tiny_gemma_dir, doc, tmp_path):
    from ropekit.core.scaling import scaling_from_factor

    p = prepare(plan(tiny_gemma_dir, doc, tmp_path / "out", methods=None, passkey_trials=0))
    assert p.plan.methods == runner.LAYERED_DEFAULT_METHODS and p.context == 64
    assert list(p.scalings) == ["none", "linear@2:full_attention", "linear@2", "yarn@2:full_attention"]
    linear = scaling_from_factor("linear", 2.0, original_max_position_embeddings=64)
    assert p.scalings["none"] is None and p.scalings["linear@2"] == linear
    assert p.scalings["linear@2:full_attention"] == {"full_attention": linear}


def test_default_grid_of_a_single_rope_model_is_unchanged(tiny_dir, doc, tmp_path):
    p = prepare(plan(tiny_dir, doc, tmp_path / "out", methods=None, passkey_trials=0))
    assert p.plan.methods == ("none", "linear", "ntk", "dynamic", "yarn")
    assert list(p.scalings) == ["none", "linear@2", "ntk@2", "dynamic@2", "yarn@2"]


def test_layer_type_methods_fail_before_loading(tiny_dir, tiny_gemma_dir, doc, tmp_path, monkeypatch):
    from ropekit import models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("weights loaded before validation"))
    with pytest.raises(ValueError, match="one RoPE for every layer"):
        prepare(plan(tiny_dir, doc, tmp_path / "o", methods=("yarn:full_attention",)))
    with pytest.raises(ValueError, match="Did you mean 'full_attention'"):
        prepare(plan(tiny_gemma_dir, doc, tmp_path / "o", methods=("yarn:full_atention",)))


def test_memory_refusal_names_the_option_and_happens_before_loading(tiny_gemma_dir, doc, tmp_path, monkeypatch):
    from ropekit import models
    from ropekit.eval import memory

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("weights loaded before the memory check"))
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**30)
    with pytest.raises(ValueError, match=r"--length 20000 needs about \d+\.\d GiB .* only 1\.0 GiB is available"):
        prepare(plan(tiny_gemma_dir, doc, tmp_path / "o", lengths=(20000,), passkey_trials=0))
    with pytest.raises(ValueError, match=r"--passkey-lengths 30000 needs about"):
        prepare(plan(tiny_gemma_dir, doc, tmp_path / "o", lengths=(96,), passkey_lengths=(30000,)))


def test_layered_grid_runs_and_global_only_differs_from_every_layer(tiny_gemma_dir, doc, tmp_path):
    p = prepare(plan(tiny_gemma_dir, doc, tmp_path / "out", methods=None, passkey_trials=0, windows=1))
    summary = summarize(p, run_plan(p, progress=False))
    ppl = {label: [b["ppl"] for b in m["ppl"]["96"]] for label, m in summary["methods"].items()}
    assert set(ppl) == {"none", "linear@2:full_attention", "linear@2", "yarn@2:full_attention"}
    # scaling every layer also moves the sliding layers' RoPE: the two variants are distinct cells
    assert ppl["linear@2:full_attention"] != ppl["linear@2"] != ppl["none"] != ppl["linear@2:full_attention"]
    assert all(m["peak_gib"] > 0 for m in summary["methods"].values())  # measured per cell (process peak RSS)
