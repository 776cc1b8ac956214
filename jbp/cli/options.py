"""Argument types shared by the ``jbp`` subcommands.

Each raises ``argparse.ArgumentTypeError``, which the parser prints as one line
with exit status 2. Paths are checked before any work, so a bad path never leaves
half the output written.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from jbp.validation import MAX_STEPS


def nonnegative_int(text: str) -> int:
    """Parse a whole number from 0 to ``MAX_STEPS``, for ``type=`` in argparse."""
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        raise argparse.ArgumentTypeError(f"invalid whole number {text!r}")
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    if value > MAX_STEPS:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_STEPS:,}, got {value:,}"
        )
    return value


IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
"""The image formats ``--plot`` writes, picked by the file's suffix."""


def output_path(text: str) -> str:
    """Check that ``text`` names a file that can be created, for ``type=``."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a file path, got an empty string")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file path")
    parent = path.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"the folder {str(parent)!r} does not exist; create it first"
        )
    return text


def image_path(text: str) -> str:
    """Check an output path whose suffix picks the image format, for ``type=``."""
    output_path(text)
    if Path(text).suffix.lower() not in IMAGE_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"{text!r} needs one of the suffixes {', '.join(IMAGE_SUFFIXES)}, which "
            "pick the image format"
        )
    return text
