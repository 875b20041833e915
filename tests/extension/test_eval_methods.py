"""The extension methods in ``ropekit eval``'s method grammar and grid."""

from __future__ import annotations

import pytest

from ropekit.eval.methods import EXTENSION_METHODS, cell_scalings, extension_for, parse_method
from ropekit.extension import EXTENSIONS, SelfExtend

CONFIG = {"rope_theta": 1e5, "max_position_embeddings": 8192, "head_dim": 64, "hidden_size": 576,
          "num_attention_heads": 9}


def test_every_extension_is_registered_and_fits_the_context():
    from ropekit.eval.methods import model_rope

    rope = model_rope(CONFIG)
    grid = cell_scalings(("none", *EXTENSION_METHODS), (2.0, 4.0), rope)
    assert set(EXTENSION_METHODS) == set(EXTENSIONS)
    assert list(grid) == ["none", "self-extend@2", "self-extend@4", "dca", "rerope", "leaky-rerope", "dynamic-yarn"]
    for label, spec in grid.items():
        if spec is not None:
            spec.check_context(8192)
    # self-extend at factor F reaches F x L with its grouped distances inside the trained context
    for f in (2.0, 4.0):
        se = extension_for("self-extend", f, 8192)
        assert isinstance(se, SelfExtend) and se.capacity(8192) >= f * 8192


@pytest.mark.parametrize(("text", "match"), [("dca@2", "factor"), ("rerope:full_attention", "layer_type"),
                                             ("dynamic-yarn@4", "factor"), ("selfextend", "self-extend")])
def test_grammar_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_method(text)
