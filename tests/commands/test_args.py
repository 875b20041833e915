"""The comma-list argument types every subcommand shares."""

from __future__ import annotations

import argparse

import pytest

from ropekit.commands.args import floats, ints, names


def test_ints_take_k_suffix():
    assert ints("16384, 8k,1.5K,,") == (16384, 8 * 1024, 1536)
    assert ints("0,1,2") == (0, 1, 2)
    with pytest.raises(argparse.ArgumentTypeError, match="token counts"):
        ints("8q")


def test_floats_and_names():
    assert floats("1, 2.5") == (1.0, 2.5)
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated numbers"):
        floats("a")
    assert names(" yarn,ntk , ") == ("yarn", "ntk")


def test_argparse_reports_them():
    p = argparse.ArgumentParser(exit_on_error=False)
    p.add_argument("--lengths", type=ints)
    assert p.parse_args(["--lengths", "2k,4k"]).lengths == (2048, 4096)
    with pytest.raises(argparse.ArgumentError, match="16384,8k"):
        p.parse_args(["--lengths", "x"])
