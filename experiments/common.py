"""Plumbing shared by the experiment scripts: options, logging, progress, output.

Every script builds its parser with :func:`make_parser`, trains with
:class:`Progress` as the ``fit`` callback, writes through :func:`write_metrics` and
:func:`save_figure`, and runs under :func:`run`, which turns errors into exit codes:
a :class:`jbp.ValidationError` or bad option prints one line on stderr and exits 2,
a divergence exits 1, and Ctrl-C exits 130.

A script that trains one long run adds :func:`add_scaling_options` (``--devices``,
``--checkpoint-dir``, ``--keep-checkpoints``, ``--resume``) and trains through
:func:`fit`, which splits batches across devices, saves a checkpoint at every chunk
boundary, resumes from the latest one, and on Ctrl-C or divergence saves the state
that the error carries before :func:`run` reports where it went.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")

import jbp
from jbp.cli.main import EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser
from jbp.cli.options import nonnegative_int

EXIT_DIVERGED = 1

RUN_FILE = "run.json"
"""The file in a checkpoint directory that records the options the run depends on."""

log = logging.getLogger("experiments")


class StopRequest:
    """Turns Ctrl-C during training into a stop at the next chunk boundary.

    A ``KeyboardInterrupt`` raised while XLA is still running a chunk can crash the
    process as it exits (seen as a segmentation fault). While :meth:`deferred` is
    active, the first Ctrl-C only records the request, and the training callback
    raises ``KeyboardInterrupt`` once the chunk has finished. A second Ctrl-C
    stops at once. Outside :meth:`deferred`, Ctrl-C behaves as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self.active = False

    def handle(self, signum: int, frame: Any) -> None:
        """The SIGINT handler."""
        if not self.active or self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.info(
            "stopping after the current chunk of epochs; press Ctrl-C again to stop "
            "at once"
        )

    @contextlib.contextmanager
    def deferred(self):
        """Defer Ctrl-C to the next :meth:`check` while the block runs."""
        self.active, self.requested = True, False
        try:
            yield self
        finally:
            self.active = False

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed since :meth:`deferred`."""
        if self.requested:
            raise KeyboardInterrupt


STOP = StopRequest()


def positive_int(text: str) -> int:
    """Parse a whole number of 1 or more, for ``type=`` in argparse."""
    try:
        value = nonnegative_int(text)
    except argparse.ArgumentTypeError:
        if re.fullmatch(r"\s*-[0-9]+\s*", text):
            raise argparse.ArgumentTypeError(
                f"must be 1 or more, got {int(text)}"
            ) from None
        raise
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


def folder_path(text: str) -> Path:
    """Parse a non-empty folder path, for ``type=`` in argparse."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a folder path, got an empty string")
    return Path(text)


def float32_number(text: str) -> float:
    """Parse a finite number that float32 can hold, for ``type=`` in argparse."""
    value = finite_float(text)
    limit = float(np.finfo(np.float32).max)
    if abs(value) > limit:
        raise argparse.ArgumentTypeError(
            f"must lie within float32's range (|x| <= {limit:.3g}), got {text}"
        )
    return value


def nonnegative_float(text: str) -> float:
    """Parse a finite number of 0 or more, for ``type=`` in argparse."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def make_parser(
    name: str, description: str, seed_help: str | None = None
) -> argparse.ArgumentParser:
    """Build a parser with the options every experiment shares.

    Shared options: ``--out`` (output folder) and ``--quiet``, and ``--seed`` when
    ``seed_help`` says what the seed draws.
    """
    parser = OneLineParser(prog=f"{name}.py", description=description)
    parser.add_argument(
        "--out",
        type=folder_path,
        default=Path("runs") / name,
        metavar="DIR",
        help="folder for the metrics JSON file and PNG plots, created if missing "
        "(default: %(default)s)",
    )
    if seed_help is not None:
        parser.add_argument(
            "--seed",
            type=nonnegative_int,
            default=0,
            help=f"{seed_help} (default: %(default)s)",
        )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no log lines; only errors and the output paths",
    )
    return parser


def add_scaling_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--devices``, ``--checkpoint-dir``, ``--keep-checkpoints`` and
    ``--resume`` to ``parser``; :func:`fit` reads them."""
    group = parser.add_argument_group("devices and checkpoints")
    group.add_argument(
        "--devices",
        type=positive_int,
        default=1,
        metavar="N",
        help="split each batch across the first N devices JAX sees, with the "
        "parameters replicated on each (default: %(default)s). A CPU counts as one "
        "device unless XLA_FLAGS=--xla_force_host_platform_device_count=N is set "
        "in the environment before the script starts",
    )
    group.add_argument(
        "--checkpoint-dir",
        type=folder_path,
        metavar="DIR",
        help="save the training state and history into DIR after every chunk of "
        "epochs; it must not already contain checkpoints unless --resume is given. "
        "Without it, only Ctrl-C or a divergence saves a checkpoint, into "
        "OUT/checkpoints",
    )
    group.add_argument(
        "--keep-checkpoints",
        type=positive_int,
        default=3,
        metavar="K",
        help="keep the newest K checkpoints in DIR (default: %(default)s)",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --checkpoint-dir from its latest checkpoint, "
        "with the same options (--epochs may grow where the schedule allows, and "
        "--devices, --chunk-epochs and --out may change)",
    )


def check_scaling_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> None:
    """Reject option combinations that :func:`add_scaling_options` cannot honour."""
    if getattr(args, "resume", False) and args.checkpoint_dir is None:
        parser.error("--resume needs --checkpoint-dir DIR, the run to continue")


def device_mesh(count: int) -> Any:
    """Return the mesh for ``--devices count``, or None for a single device.

    Raises:
        jbp.ValidationError: if JAX sees fewer than ``count`` devices.
    """
    import jax

    available = jax.device_count()
    if count > available:
        platform = jax.devices()[0].platform
        raise jbp.ValidationError(
            f"--devices {count} asks for more devices than the {available} "
            f"{platform} device(s) JAX sees; pass --devices {available} or fewer, or "
            f"on a CPU set XLA_FLAGS=--xla_force_host_platform_device_count={count} "
            "before starting the script"
        )
    return None if count == 1 else jbp.data_mesh(count)


def _empty_history(state: jbp.TrainState) -> jbp.History:
    """Return a history with no epochs in the dtypes ``fit`` records: the template
    that a saved history restores into."""
    import jax
    import numpy as np

    dtype = np.dtype(jax.numpy.result_type(*jax.tree.leaves(state.params)))
    floats = (np.zeros((0,), dtype) for _ in jbp.History._fields[1:])
    return jbp.History(np.zeros((0,), np.int32), *floats)


class Checkpoints:
    """The checkpoints of one run: a ``TrainState`` and its ``History`` per chunk.

    Each checkpoint is labelled with the optimiser step count. Next to the
    checkpoints, ``run.json`` records ``config``, the options that the run's
    trajectory depends on, and a resume with other values is rejected.

    Args:
        directory: ``--checkpoint-dir``, or None to save only on Ctrl-C or
            divergence.
        fallback: where Ctrl-C or a divergence saves without ``directory``; a
            previous run's checkpoints there are replaced.
        keep: how many of the newest checkpoints to keep.
        config: JSON-serialisable options that the trajectory depends on.
    """

    def __init__(
        self, directory: Path | None, fallback: Path, keep: int, config: dict
    ) -> None:
        self.directory = directory
        self.fallback = fallback
        self.keep = keep
        self.config = json.loads(json.dumps(config))
        self.saved: Path | None = None
        self.saved_step = -1

    def start(self, state: jbp.TrainState, resume: bool) -> jbp.FitResult:
        """Return the result to continue from: ``state`` with no history, or the
        latest checkpoint when ``resume`` is set.

        Raises:
            jbp.ValidationError: if ``resume`` finds no checkpoint or a run with
                other options, or a new run would mix with an earlier run's
                checkpoints.
        """
        history = _empty_history(state)
        steps = [] if self.directory is None else jbp.checkpoint_steps(self.directory)
        if not resume:
            if steps:
                raise jbp.ValidationError(
                    f"checkpoint directory {self.directory} already contains the "
                    f"checkpoints of a run (steps {steps}); pass --resume to continue "
                    "it, or give an empty or new directory"
                )
            return jbp.FitResult(state, history)
        if not steps:
            reason = "is empty" if self.directory.is_dir() else "does not exist"
            raise jbp.ValidationError(
                f"--resume: checkpoint directory {self.directory} {reason}, so "
                "there is no run to continue; check the path, or drop --resume to "
                "start a new run"
            )
        self._check_config()
        restored = jbp.restore_checkpoint(
            self.directory, like={"state": state, "history": history}
        )
        self.saved = self.directory.absolute() / str(steps[-1])
        self.saved_step = steps[-1]
        return jbp.FitResult(restored["state"], restored["history"])

    def _check_config(self) -> None:
        path = self.directory / RUN_FILE
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise jbp.ValidationError(
                f"--resume: cannot read {path} ({error}), which records the options "
                "of the saved run; restore that file, or start a new run"
            ) from None
        changed = sorted(
            key
            for key in set(saved) | set(self.config)
            if saved.get(key) != self.config.get(key)
        )
        if changed:
            was = ", ".join(f"{key}={saved.get(key)!r}" for key in changed)
            now = ", ".join(f"{key}={self.config.get(key)!r}" for key in changed)
            raise jbp.ValidationError(
                f"--resume: the run in {self.directory} has {was}, but these options "
                f"give {now}; repeat the saved run's options, or start a new run in "
                "another directory"
            )

    def save(self, result: jbp.FitResult, directory: Path | None = None) -> Path:
        """Save ``result`` unless its step is already saved; return the path."""
        directory = directory or self.directory
        step = int(result.state.step)
        if self.saved is not None and step <= self.saved_step:
            return self.saved
        directory.mkdir(parents=True, exist_ok=True)
        run_file = directory / RUN_FILE
        if not run_file.exists():
            run_file.write_text(json.dumps(self.config, indent=2) + "\n")
        state = {"state": result.state, "history": result.history}
        self.saved = jbp.save_checkpoint(directory, step, state, keep=self.keep)
        self.saved_step = step
        return self.saved

    def save_final(self, result: jbp.FitResult) -> Path:
        """Save the state of an interrupted or diverged run; return the path.

        A save that Ctrl-C cut short leaves an Orbax temporary directory behind,
        which is removed first, since the same step is written again.
        """
        directory = self.directory
        if directory is None:
            directory = self.fallback
            if self.saved is None and directory.exists():
                shutil.rmtree(directory)
        for leftover in directory.glob("*.orbax-checkpoint-tmp*"):
            shutil.rmtree(leftover)
        return self.save(result, directory)


def fit(
    args: argparse.Namespace,
    checkpoints: Checkpoints,
    label: str,
    network: jbp.Network,
    state: jbp.TrainState,
    x: Any,
    t: Any,
    optimizer: Any,
    **options: Any,
) -> jbp.FitResult:
    """Train ``state`` up to ``args.epochs`` epochs with ``jbp.fit``.

    The batches are split across ``args.devices`` devices. With ``args.resume``
    training continues from the latest checkpoint, and the returned history covers
    the whole run. A checkpoint is saved after every chunk when
    ``args.checkpoint_dir`` is set.

    Raises:
        jbp.DivergenceError, jbp.TrainingInterrupted: as ``jbp.fit`` does, after
            saving the state they carry; their ``checkpoint`` attribute is the path.
    """
    mesh = device_mesh(args.devices)
    start = checkpoints.start(state, args.resume)
    if args.resume:
        log.info(
            "%s resumed from %s at epoch %d",
            label,
            checkpoints.saved,
            int(start.state.epoch),
        )
    remaining = max(args.epochs - int(start.state.epoch), 0)
    progress = Progress(label, remaining, args.quiet)

    def whole_run(result: jbp.FitResult) -> jbp.FitResult:
        return jbp.FitResult(result.state, start.history.concatenate(result.history))

    def callback(result: jbp.FitResult) -> None:
        progress(result)
        if checkpoints.directory is not None:
            checkpoints.save(whole_run(result))
        STOP.check()

    try:
        with STOP.deferred():
            result = jbp.fit(
                network,
                start.state,
                x,
                t,
                optimizer,
                remaining,
                callback=callback,
                mesh=mesh,
                **options,
            )
    except (jbp.TrainingInterrupted, jbp.DivergenceError) as error:
        progress.close()
        error.checkpoint = checkpoints.save_final(whole_run(error.result))
        raise
    finally:
        progress.close()
    return whole_run(result)


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


def check_output_folder(parser: argparse.ArgumentParser, out: Path) -> None:
    """Exit with status 2 before any training if ``out`` cannot hold the results."""
    problem = None
    if out.exists() and not out.is_dir():
        problem = f"{str(out)!r} is a file; give a folder for the results"
    else:
        existing = next((p for p in (out, *out.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            problem = f"{str(existing)!r} is a file, so {str(out)!r} cannot be a folder"
    if problem:
        parser.error(f"argument --out: {problem}")


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
    check_scaling_options(parser, args)
    check_output_folder(parser, args.out)
    setup_logging(args.quiet)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, STOP.handle)
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():
            paths = experiment(args)
    except jbp.ValidationError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except jbp.DivergenceError as error:
        saved = getattr(error, "checkpoint", None)
        where = "" if saved is None else f"; the last finite state is saved in {saved}"
        print(f"{parser.prog}: error: {error}{where}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt as interrupt:
        saved = getattr(interrupt, "checkpoint", None)
        if saved is None:
            print(f"{parser.prog}: interrupted", file=sys.stderr)
        else:
            state = interrupt.result.state
            print(
                f"{parser.prog}: interrupted; saved the state after epoch "
                f"{int(state.epoch)} (step {int(state.step)}) in {saved}; continue "
                f"with the same options and --resume --checkpoint-dir {saved.parent}",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    for path in paths:
        print(f"wrote {path}")
    return 0
