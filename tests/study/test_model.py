from __future__ import annotations

import pytest
import torch

from ropekit.study.model import DecoderLM, ModelConfig

ALL = ["nope", "learned", "sinusoidal", "alibi", "rope", "rope-nope4"]


def _model(enc: str, **kw) -> DecoderLM:
    torch.manual_seed(0)
    args = dict(d_model=32, n_layers=2, n_heads=4, encoding=enc, train_len=16, max_len=64)
    args.update(kw)
    return DecoderLM(ModelConfig(**args)).eval()


@pytest.mark.parametrize("enc", ALL)
def test_model_is_causal(enc: str) -> None:
    m = _model(enc)
    x = torch.randint(0, 256, (2, 40))
    y = x.clone()
    y[:, 25:] = torch.randint(0, 256, (2, 15))
    with torch.no_grad():
        a, b = m(x), m(y)
    torch.testing.assert_close(a[:, :25], b[:, :25], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, 25:], b[:, 25:])


def test_gqa_and_config_errors() -> None:
    m = _model("rope", n_kv_heads=2)
    assert m.blocks[0].attn.wkv.out_features == 2 * 2 * 8
    loss = m.token_nll(torch.randint(0, 256, (2, 9)))
    assert loss.shape == (2, 8)
    with pytest.raises(ValueError, match="n_kv_heads"):
        ModelConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="max_len"):
        _model("learned")(torch.zeros(1, 65, dtype=torch.long))


def test_learned_rows_beyond_train_len_get_no_gradient() -> None:
    m = _model("learned").train()
    x = torch.randint(0, 256, (2, 17))
    m.token_nll(x).mean().backward()
    g = m.encoding.table.weight.grad
    assert g[:16].abs().sum() > 0 and g[16:].abs().sum() == 0


def test_p_rope_model_and_eval_scaling_run() -> None:
    m = _model("rope", rope_fraction=0.5)
    x = torch.randint(0, 256, (1, 65))
    with torch.no_grad():
        base = m.token_nll(x)
        m.encoding.set_scaling("yarn", 4.0)
        scaled = m.token_nll(x)
        m.encoding.set_scaling("none")
        again = m.token_nll(x)
    assert torch.equal(base, again) and not torch.allclose(base, scaled)
