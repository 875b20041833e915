"""doctor internals against their peers: transformers' own config standardization and rotary modules."""

from __future__ import annotations

import json
import math

import pytest
import torch

import ropekit
from ropekit.cli import main
from ropekit.core.plan import RopePlan
from ropekit.doctor import FINDINGS, Deployment, diagnose, read_engine
from ropekit.doctor.distance import config_distance, fp32_angle_error, position_grid
from ropekit.doctor.live import check_live

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=128, vocab_size=256)


def test_registry_is_complete_and_closed() -> None:
    from ropekit.doctor.findings import make

    assert all(s.severity in ("error", "warning", "info") and s.explanation for s in FINDINGS.values())
    with pytest.raises(ValueError, match="unknown finding code"):
        make("no-such-code", "hf", ["full_attention"], "m", "f")


@pytest.mark.parametrize("cfg", [
    dict(rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}, rope_theta=5e5),
    dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e5}),
    dict(rope_scaling={"rope_type": "linear", "factor": 2.0}, rope_parameters={"rope_type": "default",
                                                                               "rope_theta": 5e5}, rope_theta=1e5),
    dict(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}, partial_rotary_factor=0.5),
])
def test_hf_engine_matches_transformers_module(cfg) -> None:
    """The hf view's frequencies equal what transformers' own rotary module computes from the same dict."""
    d = {"model_type": "llama", "max_position_embeddings": 4096, **TINY, **cfg}
    view = read_engine("hf", Deployment(hf_config=d), 4096)
    conf = transformers.LlamaConfig(**{k: v for k, v in d.items() if k != "model_type"})
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    hf_inv = LlamaRotaryEmbedding(conf).inv_freq.double()
    mine = view.plan.single().inv_freq()
    assert torch.allclose(mine[: hf_inv.numel()], hf_inv, rtol=1e-6), (mine, hf_inv)


def test_fp32_error_matches_hf_module() -> None:
    """doctor's predicted fp32 angle error is what HF's LlamaRotaryEmbedding really has."""
    conf = transformers.LlamaConfig(**TINY, max_position_embeddings=8192, rope_theta=1e5)
    model = transformers.AutoModelForCausalLM.from_config(conf)
    live = check_live(model, RopePlan.from_hf(conf), context=8192)["report"]["modules"][0]
    predicted = fp32_angle_error(ropekit.RopeConfig.from_hf(conf), "hf", 8192)
    assert math.isclose(live["max_angle_error"], predicted, rel_tol=0.05), (live, predicted)


def test_position_grid_holds_the_last_position() -> None:
    g = position_grid(100_003)
    assert g[-1] == 100_002 and g[0] == 0 and torch.all(g[1:] > g[:-1])


def test_distance_zero_for_same_config_and_sees_partial() -> None:
    c = ropekit.RopeConfig(head_dim=64, base=1e4, max_position_embeddings=4096)
    assert config_distance(c, "hf", c, "hf", 4096)["max_angle_error"] == 0.0
    assert config_distance(c, "hf", c.replace(rotary_dim=32), "hf", 4096)["max_angle_error"] > 1.0


def test_engine_rejects_is_a_finding_not_an_exception() -> None:
    d = {"model_type": "llama", "max_position_embeddings": 4096, **TINY, "rope_theta": 1e4,
         "rope_scaling": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 2048,
                          "xdrope_section": [1, 2]}}
    diag = diagnose(Deployment(hf_config=d), engines="vllm")
    assert "engine-rejects" in diag.codes() and diag.exit_status == 1


@pytest.mark.parametrize("bad", [dict(hf_config=None), dict(hf_config=[1]), dict(hf_config={}, vllm_args=3),
                                 dict(hf_config={}, hf_version=3), dict(hf_config={}, llama_cpp_args=[1])])
def test_bad_deployment_raises_value_or_type_error(bad) -> None:
    with pytest.raises((ValueError, TypeError)):
        diagnose(Deployment(**bad))


def _tiny_dir(tmp_path, **cfg):
    conf = transformers.LlamaConfig(**TINY, max_position_embeddings=2048, **cfg)
    model = transformers.AutoModelForCausalLM.from_config(conf)
    model.save_pretrained(tmp_path)
    return model, conf


def test_load_clean_tiny_model(tmp_path, capsys) -> None:
    _tiny_dir(tmp_path, rope_theta=1e4)
    assert main(["doctor", str(tmp_path), "--engine", "hf", "--load", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    mods = doc["live"]["modules"]
    assert mods and mods[0]["class"] == "LlamaRotaryEmbedding" and mods[0]["max_angle_error"] < 1e-3


def test_load_catches_sabotaged_module() -> None:
    conf = transformers.LlamaConfig(**TINY, max_position_embeddings=2048,
                                    rope_scaling={"rope_type": "linear", "factor": 4.0}, rope_theta=1e4)
    model = transformers.AutoModelForCausalLM.from_config(conf)
    plan = RopePlan.from_hf(conf)
    assert check_live(model, plan, context=2048)["findings"] == []
    model.model.rotary_emb.inv_freq.mul_(4.0)  # the scaling "parsed but not applied": unscaled frequencies
    found = check_live(model, plan, context=2048)["findings"]
    assert [f.code for f in found] == ["live-mismatch"] and found[0].engine == "hf (live)"


def test_load_gemma3_style_module_per_layer_type() -> None:
    conf = transformers.Gemma3TextConfig(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                         num_hidden_layers=6, intermediate_size=128, vocab_size=256,
                                         max_position_embeddings=4096, sliding_window=128)
    model = transformers.AutoModelForCausalLM.from_config(conf)
    plan = RopePlan.from_hf(conf)
    out = check_live(model, plan, context=4096)
    assert out["findings"] == [] and {r["layer_types"][0] for r in out["report"]["modules"]} == set(plan.rope_types)
    getattr(model.model.rotary_emb, "full_attention_inv_freq").mul_(0.5)
    found = check_live(model, plan, context=4096)["findings"]
    assert [(f.code, f.layer_types) for f in found] == [("live-mismatch", ("full_attention",))]


def test_verify_without_gguf_is_bad_input(tmp_path, capsys) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **TINY, "rope_theta": 1e4,
                                                      "max_position_embeddings": 2048}))
    assert main(["doctor", str(tmp_path), "--engine", "llama.cpp", "--verify"]) == 2
    assert "--verify needs a GGUF" in capsys.readouterr().err


@pytest.mark.parametrize("cfg", [{"hidden_size": 64, "num_attention_heads": 0, "num_hidden_layers": 1},
                                 {"hidden_size": "x", "num_attention_heads": 4, "num_hidden_layers": 1},
                                 {"head_dim": 64, "num_hidden_layers": 1, "rope_scaling": "yarn"}])
def test_malformed_config_raises_value_or_type_error(cfg) -> None:
    with pytest.raises((ValueError, TypeError)):
        diagnose(Deployment(hf_config={"model_type": "llama", "max_position_embeddings": 64, **cfg}))
