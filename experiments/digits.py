"""Train an MLP on scikit-learn's bundled handwritten digits and plot its curves.

The data are the 1,797 8x8 images that ship inside scikit-learn (``load_digits``),
so nothing is downloaded. Pixel values 0..16 are scaled to 0..1, and a stratified
80/20 split, fixed by ``--split-seed``, holds out 359 images for testing, because
each class is rounded on its own.

``--devices N`` splits every batch across N devices, ``--checkpoint-dir`` saves the
state after every chunk of epochs, and ``--resume`` continues a saved run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

import common
import jax
import matplotlib.pyplot as plt
import numpy as np
import optax

import jbp

NAME = "digits"


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = common.make_parser(
        NAME,
        "Train a ReLU MLP with softmax cross-entropy and AdamW on scikit-learn's "
        "8x8 digits, and write the loss and accuracy curves.",
        seed_help="seed of the initial weights and the per-epoch shuffles; the "
        "split has its own --split-seed",
    )
    parser.add_argument(
        "--hidden",
        type=common.positive_int,
        nargs="+",
        default=[256],
        metavar="WIDTH",
        help="width of each hidden layer, input side first (default: 256)",
    )
    parser.add_argument(
        "--epochs",
        type=common.positive_int,
        default=100,
        help="passes over the training set (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=common.positive_int,
        default=32,
        help="examples per step; the last batch of an epoch is padded and masked "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--learning-rate",
        type=common.positive_float,
        default=1e-3,
        help="AdamW's learning rate: the peak of the cosine decay, or the constant "
        "rate (default: %(default)s)",
    )
    parser.add_argument(
        "--schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="cosine: decay the learning rate to 0 over --epochs, so a resumed run "
        "must keep --epochs; constant: keep it, so a resumed run may train for more "
        "epochs (default: %(default)s)",
    )
    parser.add_argument(
        "--weight-decay",
        type=common.nonnegative_float,
        default=0.1,
        help="AdamW's decoupled weight decay, scaled by the learning rate at each "
        "step; 0 for none "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--chunk-epochs",
        type=common.positive_int,
        default=5,
        help="epochs per compiled call; the progress bar updates between calls "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--split-seed",
        type=common.nonnegative_int,
        default=0,
        help="seed of the fixed stratified 80/20 split (default: %(default)s)",
    )
    common.add_scaling_options(parser)
    return parser


def load_split(seed: int) -> jbp.Split:
    """Load the digits, scale pixels to [0, 1] and split 80/20 by class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    return jbp.train_test_split(x, digits.target, 0.2, seed=seed)


def standardize(split: jbp.Split) -> jbp.Split:
    """Shift and scale each pixel to mean 0 and variance 1 on the training set.

    Pixels that are constant in the training set (the image corners) are only
    shifted. The test set uses the training set's statistics.
    """
    mean = split.x_train.mean(axis=0)
    std = split.x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0).astype(np.float32)
    return split._replace(
        x_train=(split.x_train - mean) / std, x_test=(split.x_test - mean) / std
    )


def plot_curves(history: jbp.History, title: str) -> plt.Figure:
    """Plot training and test loss (log scale) and accuracy against the epoch."""
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    epochs, test_loss, test_accuracy = history.evaluated()
    loss_axis.plot(history.epoch, history.train_loss, label="training")
    loss_axis.plot(epochs, test_loss, label="test")
    loss_axis.set_yscale("log")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("cross-entropy")
    loss_axis.legend()
    accuracy_axis.plot(history.epoch, history.train_accuracy, label="training")
    accuracy_axis.plot(epochs, test_accuracy, label="test")
    accuracy_axis.axhline(0.97, color="grey", linestyle=":", label="97%")
    accuracy_axis.set_ylim(0.8, 1.005)
    accuracy_axis.set_xlabel("epoch")
    accuracy_axis.set_ylabel("accuracy")
    accuracy_axis.legend(loc="lower right")
    figure.suptitle(title)
    return figure


class Run(NamedTuple):
    """Everything a digits run trains with, built from the options alone."""

    split: jbp.Split
    network: jbp.Network
    optimizer: optax.GradientTransformation
    state: jbp.TrainState
    config: dict


def build_run(args: argparse.Namespace) -> Run:
    """Load the data and build the network, optimiser and initial state."""
    split = standardize(load_split(args.split_seed))
    network = jbp.Network(
        (64, *args.hidden, 10), ("relu",) * len(args.hidden) + ("softmax",)
    )
    init_key, data_key = jax.random.split(jax.random.key(args.seed))
    params = jbp.init_params(network, init_key)
    config = {
        "network": list(network.sizes),
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "schedule": args.schedule,
        "seed": args.seed,
        "split_seed": args.split_seed,
    }
    if args.schedule == "cosine":
        steps = args.epochs * jbp.num_batches(len(split.t_train), args.batch_size)
        learning_rate = optax.cosine_decay_schedule(args.learning_rate, steps)
        config["schedule_steps"] = steps
    else:
        learning_rate = args.learning_rate
    optimizer = optax.adamw(learning_rate, weight_decay=args.weight_decay)
    state = jbp.init_state(network, optimizer, params, data_key)
    return Run(split, network, optimizer, state, config)


def experiment(args: argparse.Namespace) -> list[Path]:
    """Train, evaluate every epoch, and write the metrics and curves."""
    started = time.perf_counter()
    split, network, optimizer, state, config = build_run(args)
    checkpoints = common.Checkpoints(
        args.checkpoint_dir, args.out / "checkpoints", args.keep_checkpoints, config
    )
    result = common.fit(
        args,
        checkpoints,
        NAME,
        network,
        state,
        split.x_train,
        split.t_train,
        optimizer,
        batch_size=args.batch_size,
        loss="cross_entropy",
        eval_data=(split.x_test, split.t_test),
        chunk_epochs=args.chunk_epochs,
    )
    seconds = time.perf_counter() - started

    history = result.history
    _, test_loss, test_accuracy = history.evaluated()
    sizes = "-".join(map(str, network.sizes))
    metrics = {
        "network": sizes,
        "train_examples": len(split.t_train),
        "test_examples": len(split.t_test),
        "epochs": int(result.state.epoch),
        "steps": int(result.state.step),
        "devices": args.devices,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "schedule": args.schedule,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "split_seed": args.split_seed,
        "final_test_accuracy": float(test_accuracy[-1]),
        "final_test_loss": float(test_loss[-1]),
        "best_test_accuracy": float(np.max(test_accuracy)),
        "final_train_loss": float(history.train_loss[-1]),
        "wall_seconds": round(seconds, 2),
        "checkpoint": None if checkpoints.saved is None else str(checkpoints.saved),
        "history": {
            "epoch": history.epoch.tolist(),
            "train_loss": history.train_loss.tolist(),
            "train_accuracy": history.train_accuracy.tolist(),
            "test_loss": history.eval_loss.tolist(),
            "test_accuracy": history.eval_accuracy.tolist(),
        },
    }
    common.log.info(
        "test accuracy %.4f after %d epochs in %.1f s",
        test_accuracy[-1],
        args.epochs,
        seconds,
    )
    title = (
        f"digits, {sizes} MLP: test accuracy {test_accuracy[-1]:.2%} "
        f"after {args.epochs} epochs"
    )
    return [
        common.write_metrics(args.out, metrics),
        common.save_figure(plot_curves(history, title), args.out, "curves"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the experiment on ``argv`` and return the exit status."""
    return common.run(build_parser(), experiment, argv)


if __name__ == "__main__":
    raise SystemExit(main())
