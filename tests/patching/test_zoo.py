"""The tiny-model zoo: every installed RoPE causal-LM type builds from its own config and runs a cached step."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from ropekit.patching.zoo import (
    PROBE_TOKENS,
    _default_config,
    probe,
    rope_model_types,
    text_config_of,
    tiny_config,
    tiny_model,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Types that cannot be built and run here, with why. The test below asserts this is *exactly* the failing set,
#: so an entry that starts working (or a new type that breaks) fails the suite instead of rotting.
UNBUILDABLE: dict[str, str] = {
    "blt": "transformers bug: BltModel builds DynamicCache(config=BltConfig), which has no num_hidden_layers",
    "gemma3n": "its vision tower is a TimmWrapperModel and timm is not installed (gemma3n_text covers the decoder)",
    "gemma4_unified_assistant": "a drafter: forward needs the target model's inputs_embeds and shared_kv_states",
}

TYPES = rope_model_types()

# Types whose tiny stack deliberately differs from the stock one (a stock stack of one kind gains an attention layer).
_RESHAPED_LAYER_TYPES = {"granitemoehybrid", "cohere_compass_text", "lfm2_moe"}


def _quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")


def _build_and_probe(model_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    _quiet()
    model, _ = tiny_model(model_type)
    return probe(model)


def test_enough_types_are_covered() -> None:
    # transformers 5.24 has 137 such types; the zoo must keep at least 105 of them running.
    assert len(TYPES) - len(UNBUILDABLE) >= 105, (len(TYPES), sorted(UNBUILDABLE))
    assert set(UNBUILDABLE) <= set(TYPES), sorted(set(UNBUILDABLE) - set(TYPES))


def test_criterion_keeps_rope_types_and_drops_others() -> None:
    for model_type in ("llama", "mistral", "qwen2", "qwen3", "gemma3_text", "deepseek_v3", "gpt_neox", "phi3"):
        assert model_type in TYPES
    # jamba and nemotron_h copy apply_rotary_pos_emb but never rotate; gpt2/bloom/mamba have no RoPE at all.
    for model_type in ("gpt2", "bloom", "mamba", "jamba", "nemotron_h", "opt"):
        assert model_type not in TYPES
    assert TYPES == sorted(set(TYPES))


@pytest.mark.parametrize("model_type", TYPES)
def test_tiny_model_builds_and_decodes(model_type: str) -> None:
    if model_type in UNBUILDABLE:
        with pytest.raises(Exception):  # any failure at all keeps the entry honest
            _build_and_probe(model_type)
        return
    prefill, step = _build_and_probe(model_type)
    assert prefill.shape[:2] == (1, len(PROBE_TOKENS) - 1)
    assert step.shape[:2] == (1, 1)
    assert prefill.isfinite().all() and step.isfinite().all()
    # The step must depend on the cache: a non-constant, non-identical logit row.
    assert not torch.equal(step[0, -1], prefill[0, -1])


@pytest.mark.parametrize("model_type", [t for t in TYPES if t not in UNBUILDABLE])
def test_tiny_config_is_tiny_and_keeps_every_layer_kind(model_type: str) -> None:
    _quiet()
    text = text_config_of(tiny_config(model_type))
    fields = vars(text)
    if isinstance(fields.get("hidden_size"), int):
        assert fields["hidden_size"] == 64
    if isinstance(fields.get("num_hidden_layers"), int):
        # <= 16, not 8: hrm_text's count is cache slots (2 layers x its H/L cycles), not modules.
        assert 2 <= fields["num_hidden_layers"] <= 16
    if isinstance(fields.get("max_position_embeddings"), int):
        assert fields["max_position_embeddings"] == 2048
    stock_types = vars(text_config_of(_default_config(model_type))).get("layer_types")
    tiny_types = fields.get("layer_types")
    if isinstance(stock_types, list) and isinstance(tiny_types, list) and model_type not in _RESHAPED_LAYER_TYPES:
        assert set(tiny_types) == set(stock_types)
        assert len(tiny_types) == fields["num_hidden_layers"]



def test_same_seed_same_weights_and_other_seed_differs() -> None:
    _quiet()
    a, _ = tiny_model("llama", seed=3)
    b, _ = tiny_model("llama", seed=3)
    c, _ = tiny_model("llama", seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert not a.training and next(a.parameters()).device.type == "cpu"


def test_dtype_and_overrides_are_applied() -> None:
    _quiet()
    model, cfg = tiny_model("qwen3", dtype=torch.bfloat16, num_hidden_layers=3)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert cfg.num_hidden_layers == 3 and len(model.model.layers) == 3


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="model_type"):
        tiny_config("gpt2")
    with pytest.raises(TypeError, match="model_type"):
        tiny_config(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed"):
        tiny_model("llama", seed="0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dtype"):
        tiny_model("llama", dtype=torch.int64)
    with pytest.raises(ValueError, match="tokens"):
        probe(None, tokens=(1,))
