"""One device resolver: both sentinels, validated names."""

from __future__ import annotations

import pytest
import torch

from ropekit.devices import resolve_device


def test_sentinels_agree():
    want = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device() == resolve_device(None) == resolve_device("auto") == want


def test_explicit_and_bad():
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="device='gpu' is not a valid torch device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
