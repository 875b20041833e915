"""Eval method specs (METHOD[@FACTOR][:LAYER_TYPE]) and the per-layer-type cell grid, on configs only."""

from __future__ import annotations

import pytest
import transformers

from ropekit.core.scaling import scaling_from_factor
from ropekit.eval.methods import (
    DEFAULT_METHODS,
    LAYERED_DEFAULT_METHODS,
    MethodSpec,
    cell_scalings,
    model_rope,
    parse_method,
)
from tests.patching.tiny import tiny_config


def gemma_config(**kw):
    """A Gemma-3-style text config (no weights): 5 sliding layers per global one, dual RoPE base."""
    base = dict(vocab_size=260, hidden_size=64, intermediate_size=96, num_hidden_layers=12, num_attention_heads=4,
                num_key_value_heads=1, head_dim=16, max_position_embeddings=2048, sliding_window=16)
    base.update(kw)
    return transformers.Gemma3TextConfig(**base)


@pytest.mark.parametrize(
    ("text", "spec", "label"),
    [
        ("none", MethodSpec(method="none"), "none"),
        ("yarn", MethodSpec(method="yarn"), "yarn@2"),
        ("linear@8", MethodSpec(method="linear", factor=8.0), "linear@8"),
        ("linear@8:full_attention", MethodSpec(method="linear", factor=8.0, layer_types=("full_attention",)),
         "linear@8:full_attention"),
        ("ntk:full_attention+sliding_attention",
         MethodSpec(method="ntk", layer_types=("full_attention", "sliding_attention")),
         "ntk@2:full_attention+sliding_attention"),
        ("yarn@1.5", MethodSpec(method="yarn", factor=1.5), "yarn@1.5"),
    ],
)
def test_parse_and_label(text, spec, label):
    assert parse_method(text) == spec
    assert spec.label(2.0) == label


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("yarm", "method='yarm' is not one of .*Did you mean 'yarn'"),
        ("linear@x", "factor after '@' must be a number"),
        ("linear@-2", "factor must be a finite number > 0"),
        ("linear@inf", "factor must be a finite number > 0"),
        ("linear:", "name the layer types after ':'"),
        ("linear:full_attention+", "name the layer types after ':'"),
        ("none@2", "'none' is the model's own RoPE and takes no"),
        ("longrope:full_attention", "'longrope' is the model's own RoPE"),
    ],
)
def test_parse_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_method(text)
    with pytest.raises(TypeError, match="method must be a string"):
        parse_method(2.0)


def test_model_rope_reads_per_layer_type_config():
    rope = model_rope(gemma_config())
    assert rope.layered and rope.own is None and rope.context == 2048
    cfg = gemma_config()
    assert set(rope.per_type) == set(cfg.layer_types) == {"sliding_attention", "full_attention"}
    for t, rc in rope.per_type.items():  # each layer type keeps its own base, read from the config itself
        assert rc.base == cfg.rope_parameters[t]["rope_theta"]
    assert rope.per_type["full_attention"].base != rope.per_type["sliding_attention"].base
    flat = model_rope(tiny_config())
    assert not flat.layered and flat.per_type == {} and flat.context == 64


def test_layered_grid_scales_only_the_named_layer_types():
    rope = model_rope(gemma_config())
    grid = cell_scalings(("none", "linear:full_attention", "linear", "yarn@4:full_attention"), (2.0, 8.0), rope)
    assert list(grid) == ["none", "linear@2:full_attention", "linear@8:full_attention", "linear@2", "linear@8",
                          "yarn@4:full_attention"]
    assert grid["none"] is None  # the model's own RoPE on every layer
    want = scaling_from_factor("linear", 8.0, original_max_position_embeddings=2048)
    assert grid["linear@8"] == want  # a bare Scaling: every RoPE layer
    assert grid["linear@8:full_attention"] == {"full_attention": want}  # the sliding layers keep their own RoPE
    assert grid["yarn@4:full_attention"] == {
        "full_attention": scaling_from_factor("yarn", 4.0, original_max_position_embeddings=2048)}


def test_flat_grid_is_unchanged_for_single_rope_models():
    rope = model_rope(tiny_config())
    grid = cell_scalings(DEFAULT_METHODS, (2.0,), rope)
    assert list(grid) == ["none", "linear@2", "ntk@2", "dynamic@2", "yarn@2"]
    assert grid["none"] is None and grid["yarn@2"] == scaling_from_factor(
        "yarn", 2.0, original_max_position_embeddings=64)
    assert set(cell_scalings(LAYERED_DEFAULT_METHODS, (2.0,), model_rope(gemma_config()))) == {
        "none", "linear@2:full_attention", "linear@2", "yarn@2:full_attention"}


@pytest.mark.parametrize(
    ("config", "methods", "match"),
    [
        (gemma_config(), ("linear:global_attention",), r"layer type 'global_attention' is not one of .*full_attention"),
        (gemma_config(), ("linear:ful_attention",), "Did you mean 'full_attention'"),
        (tiny_config(), ("linear:full_attention",), "one RoPE for every layer; use 'linear' without"),
        (gemma_config(), ("longrope",), "'longrope' needs the model's own LongRoPE"),
        (tiny_config(), ("longrope",), "'longrope' needs the model's own LongRoPE"),
    ],
)
def test_grid_errors(config, methods, match):
    with pytest.raises(ValueError, match=match):
        cell_scalings(methods, (2.0,), model_rope(config))
