"""`ropekit` turns bad input into one "error:" line; a programming bug keeps its traceback."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest

from ropekit import cli
from ropekit.core.validation import check_positive_int, check_rotary_dim


def _command(monkeypatch: pytest.MonkeyPatch, run) -> None:  # type: ignore[no-untyped-def]
    mod = types.ModuleType("ropekit_test_fake_command", "Fake command for the error tests.")
    mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None)
    mod.add_arguments = lambda parser: None  # type: ignore[attr-defined]
    mod.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setattr(cli, "COMMANDS", {"fake": mod.__name__})


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (lambda args: check_positive_int("n", "8"), "n must be an int >= 1"),  # TypeError from an argument check
        (lambda args: check_positive_int("n", 0), "n must be an int >= 1, got 0"),  # ValueError
        (lambda args: open("/nonexistent/ropekit/config.json"), "No such file"),
    ],
)
def test_bad_input_is_one_line(monkeypatch, capsys, run, message):
    _command(monkeypatch, run)
    assert cli.main(["fake"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ropekit fake: error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "run",
    [
        lambda args: check_rotary_dim(None, 8),  # a TypeError thrown by an operation inside ropekit
        lambda args: len(None),  # outside ropekit
    ],
)
def test_bug_keeps_its_traceback(monkeypatch, capsys, run):
    _command(monkeypatch, run)
    with pytest.raises(TypeError):
        cli.main(["fake"])
    assert "error:" not in capsys.readouterr().err


def test_is_input_error_kinds():
    assert cli.is_input_error(ValueError("x"))
    assert cli.is_input_error(FileNotFoundError("x"))
    assert not cli.is_input_error(TypeError("never raised: no traceback"))
    assert not cli.is_input_error(RuntimeError("x"))
