"""The study's training-free extension variants: their per-context settings and their use in the model."""

from __future__ import annotations

import pytest
import torch

from ropekit.extension import EXTENSIONS, SelfExtend
from ropekit.study.extensions import EXTENSION_VARIANTS, study_extension
from ropekit.study.model import DecoderLM, ModelConfig


def test_variants_are_the_extension_registry() -> None:
    assert set(EXTENSION_VARIANTS) == set(EXTENSIONS)
    with pytest.raises(ValueError, match="self-extend"):
        study_extension("self-extnd", 256, 128)


@pytest.mark.parametrize("name", [n for n in EXTENSION_VARIANTS if n != "dynamic-yarn"])
@pytest.mark.parametrize(("train_len", "context"), [(128, 128), (128, 256), (128, 512), (128, 1024), (32, 256)])
def test_no_pair_sees_a_distance_beyond_training(name: str, train_len: int, context: int) -> None:
    ext = study_extension(name, context, train_len)
    ext.check_context(train_len)
    i, j = torch.arange(context)[:, None], torch.arange(context)[None, :]
    rel = ext.relative(i, j)[j <= i]  # the method's own map over every causal pair
    # DCA follows Qwen's chunk_size = L, whose largest distance is L itself (one past the trained L - 1)
    assert float(rel.max()) <= (train_len if name == "dca" else train_len - 1) and float(rel.min()) >= 0


def test_one_x_is_plain_rope_where_the_method_allows() -> None:
    assert study_extension("self-extend", 128, 128) == SelfExtend(group_size=1, window=64)
    assert study_extension("leaky-rerope", 128, 128).slope == 1.0
    assert study_extension("self-extend", 256, 128).group_size == 4  # 3 would reach distance 128 (W % 3 != 0)


def _model(enc: str, **kw) -> DecoderLM:
    torch.manual_seed(0)
    m = DecoderLM(ModelConfig(d_model=32, n_layers=4, n_heads=4, n_kv_heads=2, encoding=enc, train_len=16,
                              max_len=64, **kw)).eval()
    with torch.no_grad():  # sharper attention than at init, so positions matter
        for blk in m.blocks:
            blk.attn.wq.weight.mul_(20)
    return m


@pytest.mark.parametrize("enc", ["rope", "rope-nope4"])
def test_extension_in_the_model_matches_its_plain_equivalents(enc: str) -> None:
    m = _model(enc)
    x = torch.randint(0, 256, (2, 65))
    with torch.no_grad():
        plain = m.token_nll(x[:, :17])
        m.encoding.set_extension(study_extension("self-extend", 16, 16))  # G = 1: exactly RoPE
        torch.testing.assert_close(m.token_nll(x[:, :17]), plain, atol=1e-5, rtol=1e-5)
        m.encoding.set_extension(study_extension("dynamic-yarn", 64, 16))  # every forward has length 64
        dyn = m.token_nll(x)
        m.encoding.set_extension(None)
        m.encoding.set_scaling("yarn", 4.0)
        torch.testing.assert_close(dyn, m.token_nll(x), atol=1e-5, rtol=1e-5)
        m.encoding.set_scaling("none")
        m.encoding.set_extension(study_extension("rerope", 64, 16))
        rerope = m.token_nll(x)
        m.encoding.set_extension(None)
        # the extension really changes attention (vs ~1e-6 of rounding between the two paths above)
        assert float((rerope - m.token_nll(x)).abs().max()) > 1e-4


def test_hybrid_nope_layers_ignore_the_extension() -> None:
    m = _model("rope-nope4")
    x = torch.randint(0, 256, (1, 64))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = m.blocks[3].register_forward_hook(lambda _m, a, out: seen.append((a[0], out)))
    m.encoding.set_extension(study_extension("rerope", 64, 16))
    with torch.no_grad():
        m(x)
        inp, out = seen[0]
        m.encoding.set_extension(None)
        torch.testing.assert_close(m.blocks[3](inp), out, atol=0, rtol=0)  # layer 3 (NoPE) ran plain attention
    hook.remove()


def test_extension_conflicts_are_refused() -> None:
    m = _model("rope")
    m.encoding.set_scaling("yarn", 2.0)
    with pytest.raises(ValueError, match="set_scaling"):
        m.encoding.set_extension(study_extension("rerope", 32, 16))
    m.encoding.set_scaling("none")
    m.encoding.set_extension(study_extension("rerope", 32, 16))
    with pytest.raises(ValueError, match="set_extension"):
        m.encoding.set_scaling("ntk", 2.0)
    with pytest.raises(TypeError, match="extension config"):
        m.encoding.set_extension("rerope")
    with pytest.raises(ValueError, match="p-RoPE"):
        _model("rope", rope_fraction=0.5).encoding.set_extension(study_extension("rerope", 32, 16))
    with pytest.raises(ValueError, match="window=16"):
        m.encoding.set_extension(SelfExtend(group_size=2, window=16))  # window must be below L = 16
