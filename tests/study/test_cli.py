"""End to end: `ropekit study` on a tiny corpus, its resume, and the same command under torchrun (2 gloo ranks)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ropekit
from ropekit.commands import study as cmd

ARGS = ["--encodings", "nope,alibi,rope", "--seeds", "0", "--steps", "6", "--batch-size", "4", "--d-model", "32",
        "--layers", "1", "--heads", "2", "--train-len", "32", "--windows", "6", "--scalings", "linear,yarn",
        "--no-progress", "--device", "cpu", "--threads", "1"]


def _eval(out: Path, run: str) -> dict:
    return json.loads((out / "runs" / run / "eval.json").read_text())["variants"]


def test_cli_end_to_end_and_resume(tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    threads = torch.get_num_threads()
    assert cmd.main([*ARGS, "--out", str(out), "--root", str(tiny_root)]) == 0
    assert torch.get_num_threads() == threads  # --threads does not leak out of an in-process call
    printed = capsys.readouterr().out
    assert "Same target tokens" in printed and "rope+yarn" in printed
    res = json.loads((out / "results.json").read_text())
    labels = {(r["encoding"], r["variant"], r["protocol"]) for r in res["rows"]}
    assert ("rope", "linear", "same_target") in labels and ("alibi", "none", "sliding") in labels
    assert {r["context"] for r in res["rows"]} == {32, 64, 128, 256}
    for r in res["rows"]:
        assert r["lo"] <= r["ppl"] <= r["hi"] and r["ppl"] > 1
    assert (out / "study.png").stat().st_size > 10_000 and (out / "results.md").exists()

    # resume: nothing is retrained or re-evaluated, results are identical
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("runs/*/*")}
    assert cmd.main([*ARGS, "--out", str(out), "--root", str(tiny_root)]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("runs/*/*")} == stamps
    assert json.loads((out / "results.json").read_text())["rows"] == res["rows"]

    # other settings in the same folder are refused, not mixed in
    with pytest.raises(ValueError, match="other settings"):
        cmd.main([*ARGS, "--out", str(out), "--root", str(tiny_root), "--steps", "7"])
    # ... but a study can grow: one more encoding trains only that run
    grown = [*ARGS, "--out", str(out), "--root", str(tiny_root)]
    grown[grown.index("nope,alibi,rope")] = "nope,alibi,rope,p-rope"
    assert cmd.main(grown) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["encoding"] for r in rows} == {"nope", "alibi", "rope", "p-rope"}
    assert [r for r in rows if r["encoding"] != "p-rope"] == res["rows"]


def test_quick_preset_and_bad_names() -> None:
    parser = __import__("argparse").ArgumentParser()
    cmd.add_arguments(parser)
    cfg = cmd.config_from_args(parser.parse_args(["--quick", "--steps", "9"]))
    assert cfg.seeds == (0,) and cfg.steps == 9 and cfg.d_model == 64
    full = cmd.config_from_args(parser.parse_args([]))
    assert full.encodings == ("nope", "learned", "sinusoidal", "alibi", "rope", "rope-nope4") and len(full.seeds) == 3
    assert full.n_layers == 3  # the hybrid's NoPE layer is then layer 2, the last (see RotaryNoPEHybrid)
    with pytest.raises(ValueError, match="n_layers >= 2"):
        cmd.config_from_args(parser.parse_args(["--encodings", "rope,rope-nope4", "--layers", "1"]))
    with pytest.raises(ValueError, match="sinusoidal"):
        cmd.config_from_args(parser.parse_args(["--encodings", "sinusodal"]))


def test_torchrun_two_gloo_ranks_give_the_single_process_result(tiny_root: Path, tmp_path: Path) -> None:
    single, ddp = tmp_path / "one", tmp_path / "two"
    assert cmd.main([*ARGS, "--out", str(single), "--root", str(tiny_root)]) == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(ropekit.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmdline = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), "-m", "ropekit", "study", *ARGS, "--out", str(ddp), "--root", str(tiny_root)]
    # own session, so a hang can be killed with all of torchrun's workers
    proc = subprocess.Popen(cmdline, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    for run in ("nope-seed0", "alibi-seed0", "rope-seed0"):
        a, b = _eval(single, run), _eval(ddp, run)
        assert a.keys() == b.keys()
        for variant in a:
            for proto in a[variant]:
                for c in a[variant][proto]:
                    assert b[variant][proto][c] == pytest.approx(a[variant][proto][c], rel=1e-4), (run, variant, c)


def test_hybrid_joins_the_grid_with_scalings_and_paired_ratios(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "h"
    args = [*ARGS, "--out", str(out), "--root", str(tiny_root)]
    args[args.index("nope,alibi,rope")] = "nope,rope,rope-nope4"
    args[args.index("--layers") + 1] = "2"
    assert cmd.main([*args, "--extensions", ""]) == 0  # first without the extensions, then grown by them
    first = json.loads((out / "timings.json").read_text())
    assert not any(r["variant"] == "rerope" for r in json.loads((out / "results.json").read_text())["rows"])
    assert cmd.main(args) == 0
    grown = json.loads((out / "timings.json").read_text())
    for run in ("rope-seed0", "rope-nope4-seed0"):  # the new variants' eval time adds to the run's
        assert grown[run]["eval_s"] > first[run]["eval_s"] and grown[run]["train_s"] >= first[run]["train_s"]
    assert grown["nope-seed0"] == first["nope-seed0"]  # nothing new to evaluate for NoPE
    res = json.loads((out / "results.json").read_text())
    rows = {(r["encoding"], r["variant"], r["protocol"], r["context"]): r for r in res["rows"]}
    # the eval-time scalings and the training-free extensions reach the hybrid's RoPE layers
    for variant in ("none", "linear", "yarn", "self-extend", "dca", "rerope", "leaky-rerope", "dynamic-yarn"):
        assert ("rope-nope4", variant, "same_target", 64) in rows
        assert (variant == "none") == (("nope", variant, "same_target", 64) in rows)
    hyb = rows[("rope-nope4", "none", "same_target", 64)]
    assert {"vs_rope", "vs_nope"} <= hyb.keys() and "vs_rope_same" not in hyb
    assert "vs_rope_same" in rows[("rope-nope4", "yarn", "same_target", 64)]
    assert "vs_nope" not in rows[("nope", "none", "same_target", 64)]
    assert "vs_rope" not in rows[("rope", "none", "same_target", 64)]
    assert "vs_rope_same" not in rows[("rope", "yarn", "same_target", 64)]
    # the scaled hybrid is not its unscaled self: the scaling really changed its RoPE layers
    a = _eval(out, "rope-nope4-seed0")
    assert a["yarn"]["same_target"]["256"] != a["none"]["same_target"]["256"]
    md = (out / "results.md").read_text()
    assert "Ratio to NoPE" in md and "same inference-time scaling" in md and "| rope-nope4+yarn |" in md
    assert "| rope+self-extend |" in md and "| rope-nope4+dca |" in md
    # p-RoPE gets the scalings but not the extensions (they rotate with the full frequency set)
    from ropekit.study.runner import StudyConfig, _variants

    assert "rerope" not in _variants(StudyConfig(), "p-rope") and "yarn" in _variants(StudyConfig(), "p-rope")
