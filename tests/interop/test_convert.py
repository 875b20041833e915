"""`ropekit convert` and load_rope_config: SRC as config.json, directory or GGUF."""

from __future__ import annotations

import json
import shlex

import pytest

import ropekit
from ropekit.cli import main
from ropekit.interop import from_gguf, from_hf, from_llama_cpp_args, from_vllm, load_rope_config

PHI3 = {"model_type": "phi3", "hidden_size": 3072, "num_attention_heads": 32, "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096, "rope_theta": 10000.0,
        "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 48, "long_factor": [2.0] * 48}}
YARN = {"model_type": "qwen2", "hidden_size": 1024, "num_attention_heads": 8, "max_position_embeddings": 131072,
        "rope_theta": 1000000.0,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}


def _json(tmp_path, d, name="config.json"):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return str(p)


def test_convert_hf_to_each_dialect(tmp_path, capsys):
    src = _json(tmp_path, YARN)
    cfg = from_hf(YARN)
    assert main(["convert", src, "--to", "vllm"]) == 0
    assert from_vllm(json.loads(capsys.readouterr().out)) == cfg
    assert main(["convert", src, "--to", "llama.cpp"]) == 0
    args = shlex.split(capsys.readouterr().out)
    assert from_llama_cpp_args(args, head_dim=128) == cfg.replace(max_position_embeddings=None)
    assert main(["convert", src, "--to", "hf"]) == 0
    assert from_hf(json.loads(capsys.readouterr().out) | {"hidden_size": 1024, "num_attention_heads": 8}) == cfg
    assert main(["convert", src, "--to", "gguf"]) == 0
    md = json.loads(capsys.readouterr().out)["metadata"]
    assert md["qwen2.rope.scaling.type"] == "yarn" and md["qwen2.rope.freq_base"] == 1e6


def test_convert_refuses_lossy_targets(tmp_path, capsys):
    src = _json(tmp_path, PHI3)
    assert main(["convert", src, "--to", "llama.cpp"]) == 2
    assert "cannot express 'longrope'" in capsys.readouterr().err
    assert main(["convert", src, "--to", "gguf"]) == 0  # LongRoPE lives in GGUF tensors
    out = json.loads(capsys.readouterr().out)
    assert out["tensors"]["rope_factors_long"] == [2.0] * 48


def test_gguf_source_and_layout_note(smollm2_gguf, capsys):
    assert main(["convert", smollm2_gguf, "--to", "hf"]) == 0
    captured = capsys.readouterr()
    assert "permute_qk" in captured.err  # GGUF llama weights are interleaved, HF Llama's are half
    d = json.loads(captured.out)
    assert from_hf(d | {"hidden_size": 576, "num_attention_heads": 9}) == from_gguf(smollm2_gguf).replace(layout="half")


def test_load_rope_config_dispatch(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    _json(d, PHI3)
    assert load_rope_config(d) == load_rope_config(d / "config.json") == from_hf(PHI3)
    assert isinstance(load_rope_config(str(d)).scaling, ropekit.LongRoPE)
    with pytest.raises(FileNotFoundError):
        load_rope_config(tmp_path / "missing.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_rope_config(empty)
    bad = tmp_path / "x.txt"
    bad.write_text("{}")
    with pytest.raises(ValueError, match=".json"):
        load_rope_config(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_rope_config(broken)
