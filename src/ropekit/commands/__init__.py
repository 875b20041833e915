"""Subcommands of the ``ropekit`` CLI, one module each."""
