"""The hybrid ``rope-nope4``: which layers rotate, that its layers ARE RoPE / NoPE layers, scaling, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ropekit.study.encodings import ENCODINGS, NoPE, RotaryNoPEHybrid, make_encoding
from ropekit.study.model import DecoderLM, ModelConfig
from ropekit.study.train import TrainConfig, train

STREAM = (torch.arange(20_000) * 29 % 241).to(torch.uint8)


def _model(enc: str, n_layers: int = 4, **kw) -> DecoderLM:
    torch.manual_seed(0)
    args = dict(d_model=32, n_layers=n_layers, n_heads=4, encoding=enc, train_len=16, max_len=64)
    args.update(kw)
    return DecoderLM(ModelConfig(**args)).eval()


@pytest.mark.parametrize(("n_layers", "nope"), [(2, (1,)), (3, (2,)), (4, (3,)), (5, (3,)), (8, (3, 7)),
                                                 (12, (3, 7, 11)), (36, tuple(range(3, 36, 4)))])
def test_nope_layers_follow_the_smollm3_rule(n_layers: int, nope: tuple[int, ...]) -> None:
    enc = RotaryNoPEHybrid(8, 16)
    assert enc.nope_layers(n_layers) == nope
    if n_layers >= 4:  # SmolLM3 / Llama-4: no_rope_layers[i] = int((i + 1) % 4 != 0), 0 meaning NoPE
        assert nope == tuple(i for i in range(n_layers) if (i + 1) % 4 == 0)


def test_bad_hybrid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="n_layers >= 2"):
        RotaryNoPEHybrid(8, 16).nope_layers(1)
    with pytest.raises(ValueError, match="n_layers >= 2"):
        ModelConfig(n_layers=1, encoding="rope-nope4")
    with pytest.raises(ValueError, match="period"):
        RotaryNoPEHybrid(8, 16, period=1)
    with pytest.raises(ValueError, match="layer=4"):
        RotaryNoPEHybrid(8, 16).layer_encoding(4, 4)
    with pytest.raises(ValueError, match="rope-nope4"):
        ModelConfig(encoding="rope-nope")


@pytest.mark.parametrize("n_layers", [2, 3, 4, 8])
def test_model_layers_get_rope_or_nope(n_layers: int) -> None:
    m = _model("rope-nope4", n_layers)
    nope = set(m.encoding.nope_layers(n_layers))
    for i, blk in enumerate(m.blocks):
        enc = blk.attn.enc[0]
        if i in nope:
            assert isinstance(enc, NoPE) and not isinstance(enc, RotaryNoPEHybrid)
        else:
            assert enc is m.encoding  # one shared rotary module: a scaling reaches every RoPE layer


@pytest.mark.parametrize("name", [e for e in ENCODINGS if e != "rope-nope4"])
def test_other_encodings_act_in_every_layer(name: str) -> None:
    m = _model(name, 4)
    assert all(blk.attn.enc[0] is m.encoding for blk in m.blocks)
    enc = make_encoding(name, d_model=32, n_heads=4, head_dim=8, train_len=16, max_len=64)
    assert all(enc.layer_encoding(i, 4) is enc for i in range(4))


def _block_io(m: DecoderLM, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of every block for token ids ``x``."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [b.register_forward_hook(lambda _m, a, out: seen.append((a[0], out))) for b in m.blocks]
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("scaling", ["none", "yarn", "dynamic"])
def test_hybrid_layers_compute_exactly_rope_or_nope_layers(scaling: str) -> None:
    hybrid, rope, nope = _model("rope-nope4", 8), _model("rope", 8), _model("nope", 8)
    with torch.no_grad():  # init q/k are tiny and attention near uniform, which hides positions: sharpen it
        for blk in hybrid.blocks:
            blk.attn.wq.weight.mul_(20)
            blk.attn.wkv.weight.mul_(20)
    rope.load_state_dict(hybrid.state_dict())
    nope.load_state_dict(hybrid.state_dict())
    if scaling != "none":
        hybrid.encoding.set_scaling(scaling, 4.0)
        rope.encoding.set_scaling(scaling, 4.0)
    x = torch.randint(0, 256, (2, 64))
    io = _block_io(hybrid, x)
    nope_layers = set(hybrid.encoding.nope_layers(8))
    with torch.no_grad():
        for i, (inp, out) in enumerate(io):
            same, other = (nope, rope) if i in nope_layers else (rope, nope)
            torch.testing.assert_close(same.blocks[i](inp), out, atol=0, rtol=0)
            # the attention itself (the residual stream would hide it: init weights are small)
            h = hybrid.blocks[i].ln1(inp)
            a, b = hybrid.blocks[i].attn(h), other.blocks[i].attn(h)
            assert float((a - b).norm() / a.norm()) > 1e-2, f"layer {i} also computes the other kind of layer"
    # before the first NoPE layer the hybrid IS the RoPE model, bit for bit
    rio = _block_io(rope, x)
    for i in range(min(nope_layers)):
        assert torch.equal(io[i][1], rio[i][1])
    assert float((io[-1][1] - rio[-1][1]).norm()) > 0


def test_scaling_reaches_rope_layers_only() -> None:
    m = _model("rope-nope4", 4)
    x = torch.randint(0, 256, (1, 64))
    with torch.no_grad():
        for blk in m.blocks:
            blk.attn.wq.weight.mul_(20)
    base = _block_io(m, x)
    m.encoding.set_scaling("yarn", 4.0)
    scaled = _block_io(m, x)
    m.encoding.set_scaling("none")
    assert not torch.equal(base[0][1], scaled[0][1])  # a RoPE layer sees the new frequencies
    with torch.no_grad():  # the NoPE layer (3) maps the same input to the same output under any scaling
        torch.testing.assert_close(m.blocks[3](scaled[3][0]), scaled[3][1], atol=0, rtol=0)
    assert torch.equal(_block_io(m, x)[-1][1], base[-1][1])  # "none" restores the model exactly


def test_hybrid_is_causal_and_trains(tmp_path: Path) -> None:
    m = _model("rope-nope4", 4)
    x = torch.randint(0, 256, (2, 40))
    y = x.clone()
    y[:, 25:] = torch.randint(0, 256, (2, 15))
    with torch.no_grad():
        torch.testing.assert_close(m(x)[:, :25], m(y)[:, :25], atol=1e-5, rtol=1e-5)
    mcfg = ModelConfig(d_model=32, n_layers=4, n_heads=4, encoding="rope-nope4", train_len=16, max_len=64)
    tcfg = TrainConfig(steps=12, batch_size=4, lr=1e-2, warmup=2, seed=3, ckpt_every=6)
    model, state = train(mcfg, tcfg, STREAM, tmp_path / "m.pt", progress=False)
    losses = [x[1] for x in state["losses"]]
    assert state["done"] and len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3])
    assert isinstance(model.blocks[3].attn.enc[0], NoPE) and model.blocks[2].attn.enc[0] is model.encoding
