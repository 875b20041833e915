"""`ropekit inspect` on HF config.json files: table, JSON, plot, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ropekit.cli import main
from ropekit.testing.hf_grid import LLAMA31_8B, phi3_mini_128k


@pytest.fixture
def llama_json(tmp_path: Path) -> Path:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(LLAMA31_8B))
    return p


def test_table(llama_json: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(llama_json)]) == 0
    out = capsys.readouterr().out
    assert "method             llama3" in out
    assert "35 of 64 pairs complete a full turn within 8192 tokens" in out
    assert "changed by scaling 35 of 64 pairs" in out


def test_json_summary(llama_json: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(llama_json.parent), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["method"] == "llama3" and s["original_context"] == 8192 and s["extended_context"] == 131072
    assert len(s["pairs"]) == 64
    # low-frequency pairs are interpolated by exactly the factor; high-frequency ones untouched
    assert s["pairs"][-1]["ratio"] == pytest.approx(1 / 8) and s["pairs"][0]["ratio"] == 1.0


def test_longrope_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "phi3.json"
    p.write_text(json.dumps(phi3_mini_128k()))
    png = tmp_path / "w.png"
    assert main(["inspect", str(p), "--json", "--plot", str(png)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["method"] == "longrope" and s["attention_factor"] == pytest.approx(1.1902380714238083)
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 4, "rope_scaling": {"type": "lineer"}}))
    assert main(["inspect", str(bad)]) == 2
    assert "Did you mean 'linear'" in capsys.readouterr().err


GEMMA3_LIKE = {
    "model_type": "gemma3_text", "hidden_size": 640, "num_attention_heads": 4, "head_dim": 256,
    "num_hidden_layers": 6, "max_position_embeddings": 32768,
    "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
    "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}},
}


def test_per_layer_type_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(GEMMA3_LIKE))
    assert main(["inspect", str(p)]) == 0
    out = capsys.readouterr().out
    assert "sliding_attention    0,1,2,3,4" in out and "default base=10000" in out
    assert "full_attention       5" in out and "linear base=1e+06" in out
    assert main(["inspect", str(p), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["layer_type"] for r in data["plan"]] == ["sliding_attention", "full_attention"]
    assert data["types"]["full_attention"]["method"] == "linear"
    assert main(["inspect", str(p), "--layer-type", "full_attention"]) == 0  # one type, as before
    assert "method             linear" in capsys.readouterr().out
