from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ropekit.study.train as train_mod
from ropekit.study.io import atomic_save, read_json, write_json
from ropekit.study.model import ModelConfig
from ropekit.study.train import TrainConfig, load_checkpoint, lr_at, train

MCFG = ModelConfig(d_model=32, n_layers=1, n_heads=2, encoding="rope", train_len=16, max_len=64)
STREAM = (torch.arange(20_000) * 31 % 251).to(torch.uint8)


def _cfg(**kw) -> TrainConfig:
    args = dict(steps=6, batch_size=4, lr=1e-2, warmup=2, seed=5, ckpt_every=3)
    args.update(kw)
    return TrainConfig(**args)


def test_atomic_writes_leave_no_temporaries(tmp_path: Path) -> None:
    write_json({"a": 1}, tmp_path / "x" / "r.json")
    atomic_save({"t": torch.ones(2)}, tmp_path / "x" / "m.pt")
    assert read_json(tmp_path / "x" / "r.json") == {"a": 1}
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["m.pt", "r.json"]
    assert read_json(tmp_path / "missing.json") is None


def test_lr_schedule() -> None:
    cfg = _cfg(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3)


HYBRID = ModelConfig(d_model=32, n_layers=4, n_heads=2, encoding="rope-nope4", train_len=16, max_len=64)


@pytest.mark.parametrize("mcfg", [MCFG, HYBRID], ids=["rope", "rope-nope4"])
def test_interrupted_training_resumes_to_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        mcfg: ModelConfig) -> None:
    ref, ref_state = train(mcfg, _cfg(), STREAM, tmp_path / "ref.pt", progress=False)

    real = train_mod.local_batch

    def crash_at_4(stream, cfg, train_len, step, dist):
        if step == 4:
            raise KeyboardInterrupt("simulated kill")
        return real(stream, cfg, train_len, step, dist)

    monkeypatch.setattr(train_mod, "local_batch", crash_at_4)
    with pytest.raises(KeyboardInterrupt):
        train(mcfg, _cfg(), STREAM, tmp_path / "run.pt", progress=False)
    mid = torch.load(tmp_path / "run.pt", weights_only=False)
    assert mid["step"] == 3 and not mid["done"]
    monkeypatch.setattr(train_mod, "local_batch", real)
    resumed, state = train(mcfg, _cfg(), STREAM, tmp_path / "run.pt", progress=False)
    assert state["done"] and state["step"] == 6
    for (n, a), (_, b) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=n)
    assert [x[1] for x in state["losses"]] == [x[1] for x in ref_state["losses"]]


def test_finished_runs_are_not_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = train(MCFG, _cfg(), STREAM, tmp_path / "m.pt", progress=False)

    def boom(*a, **k):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(train_mod, "local_batch", boom)
    again, _ = train(MCFG, _cfg(), STREAM, tmp_path / "m.pt", progress=False)
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    for a, b, c in zip(model.parameters(), again.parameters(), loaded.parameters()):
        assert torch.equal(a, b) and torch.equal(a, c)
    with pytest.raises(ValueError, match="other settings"):
        train(MCFG, _cfg(lr=5e-3), STREAM, tmp_path / "m.pt", progress=False)
    assert json.dumps(ckpt["train_config"])  # plain data, readable without ropekit
