"""The ``jbp`` command: one subcommand per module in this package."""

from jbp.cli.main import main

__all__ = ["main"]
