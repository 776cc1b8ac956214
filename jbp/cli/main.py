"""Argument parsing and error handling shared by every ``jbp`` subcommand.

A :class:`~jbp.errors.ValidationError` or a bad option prints one line on stderr
and exits with status 2. Ctrl-C exits with status 130. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jbp.cli import check, explain, reproduce
from jbp.errors import ValidationError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(
            EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n"
        )


def build_parser() -> argparse.ArgumentParser:
    """Build the ``jbp`` parser with every subcommand."""
    parser = OneLineParser(
        prog="jbp",
        description="Backpropagation in JAX: reproduce, explain and check the classic "
        "worked example, or any small network you write by hand.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    for module in (reproduce, explain, check):
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jbp`` on ``argv`` (default: sys.argv); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValidationError as error:
        print(f"jbp {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"jbp {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (such as `head`) closed the pipe early. Point stdout at
        # /dev/null so that Python's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
