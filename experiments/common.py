"""Plumbing shared by the experiment scripts: options, logging, progress, output.

Every script builds its parser with :func:`make_parser`, trains with
:class:`Progress` as the ``fit`` callback, writes through :func:`write_metrics` and
:func:`save_figure`, and runs under :func:`run`, which turns errors into exit codes:
a :class:`jbp.ValidationError` or bad option prints one line on stderr and exits 2,
a divergence exits 1, and Ctrl-C exits 130. Options that every script should gain
later (checkpoints, resuming, devices) belong in :func:`make_parser`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import jbp
from jbp.cli.main import EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser
from jbp.cli.options import nonnegative_int

EXIT_DIVERGED = 1

log = logging.getLogger("experiments")


def positive_int(text: str) -> int:
    """Parse a whole number of 1 or more, for ``type=`` in argparse."""
    value = nonnegative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """Parse a finite number greater than 0, for ``type=`` in argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def finite_float(text: str) -> float:
    """Parse a finite number, for ``type=`` in argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """Parse a finite number of 0 or more, for ``type=`` in argparse."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def make_parser(name: str, description: str) -> argparse.ArgumentParser:
    """Build a parser with the options every experiment shares.

    Shared options: ``--out`` (output folder), ``--seed`` and ``--quiet``.
    """
    parser = OneLineParser(prog=f"{name}.py", description=description)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / name,
        metavar="DIR",
        help="folder for the metrics JSON file and PNG plots, created if missing "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=nonnegative_int,
        default=0,
        help="seed of every random draw: initial weights, data split and shuffles "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no log lines; only errors and the output paths",
    )
    return parser


def setup_logging(quiet: bool) -> None:
    """Send the experiments' log lines to stderr, or none below warnings with
    ``quiet``. Other libraries log warnings and errors only."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    log.setLevel(logging.WARNING if quiet else logging.INFO)


class Progress:
    """A ``fit`` callback that moves a tqdm bar and logs one line per chunk.

    Args:
        label: names the run in the bar and the log lines.
        epochs: the number of epochs the ``fit`` call trains.
        quiet: draw and log nothing.
    """

    def __init__(self, label: str, epochs: int, quiet: bool) -> None:
        self.label = label
        self.quiet = quiet
        self.done = 0
        self.started = time.perf_counter()
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, desc=label, unit="epoch", leave=False)

    def __call__(self, result: jbp.FitResult) -> None:
        history = result.history
        new = len(history.epoch) - self.done
        self.done = len(history.epoch)
        if self.quiet or new <= 0:
            return
        fields = {"loss": f"{history.train_loss[-1]:.4g}"}
        epochs, losses, accuracies = history.evaluated()
        if len(epochs):
            fields["test_loss"] = f"{losses[-1]:.4g}"
            fields["test_acc"] = f"{accuracies[-1]:.4f}"
        self.bar.update(new)
        self.bar.set_postfix(fields)
        elapsed = time.perf_counter() - self.started
        text = " ".join(f"{key}={value}" for key, value in fields.items())
        log.info(
            "%s epoch %d step %d %s (%.1f s)",
            self.label,
            int(result.state.epoch),
            int(result.state.step),
            text,
            elapsed,
        )

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()


def write_metrics(out: Path, metrics: dict[str, Any]) -> Path:
    """Write ``metrics`` as ``out/metrics.json`` and return the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def save_figure(figure: Any, out: Path, name: str) -> Path:
    """Save a matplotlib figure as ``out/name.png``, close it and return the path."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def run(
    parser: argparse.ArgumentParser,
    experiment: Callable[[argparse.Namespace], list[Path]],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, run ``experiment`` and print where its files went.

    Returns:
        The exit status: 0, 1 after a divergence, 2 for bad input, 130 on Ctrl-C.
    """
    args = parser.parse_args(argv)
    setup_logging(args.quiet)
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():
            paths = experiment(args)
    except jbp.ValidationError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except jbp.DivergenceError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        # TODO: write a final checkpoint here once experiments save checkpoints.
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    for path in paths:
        print(f"wrote {path}")
    return 0
