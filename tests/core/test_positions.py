"""One place checks positions: the record agrees with itself, and every consumer says the same thing."""

from __future__ import annotations

import pytest
import torch

import ropekit
from ropekit.core.positions import positions_from_cu_seqlens, token_positions
from ropekit.functional import apply_rotary

MODES = {
    "positions": ((2, 5), {"positions": torch.tensor([[0, 3, 1, 9, 2], [4, 4, 4, 4, 4]])}),
    "offset": ((2, 5), {"offset": 7}),
    "offsets": ((2, 5), {"offset": torch.tensor([3, 11])}),
    "packed": ((9,), {"cu_seqlens": torch.tensor([0, 4, 4, 9]), "offset": torch.tensor([2, 50, 0])}),
    "packed-int": ((9,), {"cu_seqlens": torch.tensor([0, 4, 9]), "offset": 6}),
}


@pytest.mark.parametrize("name", list(MODES))
def test_needed_is_max_position_plus_one(name):
    shape, kw = MODES[name]
    tp = token_positions(shape, **kw)
    assert tp.mode == name.split("-")[0]
    pos = tp.expand()
    assert pos.dtype == torch.int64
    assert tp.needed == int(pos.max()) + 1  # the empty sequence's offset 50 asks nothing of the table
    with pytest.raises(AttributeError):  # immutable
        tp.needed = 0  # type: ignore[misc]
    assert token_positions(shape, **kw, table_len=tp.needed).needed == tp.needed
    with pytest.raises(ValueError, match=rf"must be < {tp.needed - 1} \(the cos/sin table has {tp.needed - 1} rows\)"):
        token_positions(shape, **kw, table_len=tp.needed - 1)


def test_unread_values_skip_syncs_but_not_dtypes():
    tp = token_positions((2, 5), offset=torch.tensor([3, 11]), read_values=False)
    assert tp.needed is None
    assert token_positions((2, 5), offset=3, read_values=False).needed == 8  # ints need no sync
    with pytest.raises(TypeError, match="offset must have an integer dtype"):
        token_positions((2, 5), offset=torch.tensor([0.0, 1.0]), read_values=False)


def test_packed_helper_matches_the_record():
    cu, off = MODES["packed"][1]["cu_seqlens"], MODES["packed"][1]["offset"]
    want = torch.cat([torch.arange(4) + 2, torch.arange(5)])
    assert torch.equal(positions_from_cu_seqlens(cu, off), want)


BAD = [
    ({"offset": -1}, ValueError),
    ({"offset": 1.5}, TypeError),
    ({"offset": 13}, ValueError),
    ({"offset": torch.tensor([0, 13])}, ValueError),
    ({"offset": torch.tensor([0, 1, 2])}, ValueError),
    ({"positions": torch.tensor([0, 1, 2, 16])}, ValueError),
    ({"positions": torch.tensor([0, -1, 2, 3])}, ValueError),
    ({"positions": torch.arange(4.0)}, TypeError),
    ({"positions": torch.arange(3)}, ValueError),
    ({"positions": torch.arange(4), "offset": 1}, ValueError),
]


@pytest.mark.parametrize(("kw", "exc"), BAD, ids=[str(sorted(kw)) + str(i) for i, (kw, _) in enumerate(BAD)])
def test_every_consumer_words_an_error_the_same(kw, exc):
    """reference, the fused CPU backend and RotaryEmbedding all raise token_positions' own message."""
    q = torch.randn(2, 4, 2, 8)
    cos, sin = ropekit.RopeConfig(head_dim=8).cos_sin_table(16)
    with pytest.raises(exc) as want:
        token_positions(q.shape, **kw, table_len=16)
    for backend in ("reference", "cpu"):
        with pytest.raises(exc) as got:
            apply_rotary(q, None, cos, sin, backend=backend, **kw)
        assert str(got.value) == str(want.value), backend
    if "16" not in str(want.value):  # RotaryEmbedding grows its table instead of refusing
        with pytest.raises(exc) as got:
            ropekit.RotaryEmbedding(ropekit.RopeConfig(head_dim=8))(q, **kw)
        assert str(got.value) == str(want.value)
