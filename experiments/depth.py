"""Vanishing gradients: per-layer gradient norms against depth, activation and init.

Every network maps the 64 digit pixels through ``depth - 1`` hidden layers of the
same width to a 10-way softmax, with cross-entropy loss. For each hidden activation
(sigmoid, tanh, ReLU), each initialiser (Glorot normal, He normal) and each depth
from 2 to 20, the Frobenius norm of ``dE/dw`` of every layer is measured at
initialisation on a fixed batch. The deepest networks are then trained with SGD,
and the same norms are measured again between compiled chunks of epochs.

Layers are numbered from the input (layer 1) to the output, so a gradient that
vanishes on its way back shows up as norms falling to the left.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from matplotlib.ticker import MaxNLocator

import jbp

NAME = "depth"
ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = ("glorot_normal", "he_normal")


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = common.make_parser(
        NAME,
        "Measure every layer's gradient norm at initialisation for depths 2 to 20, "
        "sigmoid, tanh and ReLU, Glorot and He initialisation, then train the "
        "deepest networks and measure again; plot it all in one figure.",
        seed_help="seed of the initial weights and the training shuffles",
    )
    parser.add_argument(
        "--depths",
        type=common.positive_int,
        nargs="+",
        default=[2, 4, 6, 8, 10, 12, 14, 16, 18, 20],
        metavar="DEPTH",
        help="numbers of layers with weights, output layer included, to measure at "
        "initialisation (default: 2 4 ... 20)",
    )
    parser.add_argument(
        "--activations",
        choices=ACTIVATIONS,
        nargs="+",
        default=list(ACTIVATIONS),
        help="hidden-layer activations to compare (default: all three)",
    )
    parser.add_argument(
        "--width",
        type=common.positive_int,
        default=32,
        help="neurons in every hidden layer (default: %(default)s)",
    )
    parser.add_argument(
        "--train-depth",
        type=common.positive_int,
        default=20,
        help="the depth that is trained to show the norms during training "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=common.positive_int,
        default=20,
        help="epochs of training for --train-depth (default: %(default)s)",
    )
    parser.add_argument(
        "--measure-every",
        type=common.positive_int,
        default=5,
        help="epochs between gradient measurements during training "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--learning-rate",
        type=common.positive_float,
        default=0.05,
        help="SGD learning rate for training (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=common.positive_int,
        default=64,
        help="examples per training step (default: %(default)s)",
    )
    return parser


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Load the digits' pixels, standardised per pixel, and their labels."""
    from sklearn.datasets import load_digits as load

    digits = load()
    x = digits.data.astype(np.float32)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return x.astype(np.float32), digits.target


def make_network(depth: int, width: int, activation: str) -> jbp.Network:
    """``depth`` layers with weights: ``depth - 1`` hidden, then a softmax."""
    if depth < 2:
        raise jbp.ValidationError(
            f"depth must be at least 2 (one hidden layer and the output), got {depth}"
        )
    sizes = (64, *([width] * (depth - 1)), 10)
    return jbp.Network(sizes, (activation,) * (depth - 1) + ("softmax",))


@functools.partial(jax.jit, static_argnums=0)
def layer_norms(network: jbp.Network, params: jbp.Params, x, t) -> jax.Array:
    """Compute the Frobenius norm of ``dE/dw`` for every layer, input side first."""
    grads = jbp.autodiff_grad(network, params, x, t, "cross_entropy")
    return jnp.stack([jnp.linalg.norm(layer.w) for layer in grads])


def measure_at_init(args, x, t) -> dict:
    """Per-layer norms at initialisation for every activation, init and depth."""
    norms = {}
    for activation in args.activations:
        for init in INITS:
            for depth in args.depths:
                network = make_network(depth, args.width, activation)
                params = jbp.init_params(
                    network, jax.random.key(args.seed), initializer=init
                )
                norms[activation, init, depth] = np.asarray(
                    layer_norms(network, params, x, t)
                )
            common.log.info(
                "%s, %s: first-layer gradient norm %.3g at depth %d",
                activation,
                init,
                norms[activation, init, depth][0],
                depth,
            )
    return norms


def measure_in_training(args, x, t, probe) -> dict:
    """Train the deepest networks; norms on ``probe`` at init and between chunks."""
    curves = {}
    optimizer = optax.sgd(args.learning_rate)
    for activation in args.activations:
        for init in INITS:
            network = make_network(args.train_depth, args.width, activation)
            params = jbp.init_params(
                network, jax.random.key(args.seed), initializer=init
            )
            state = jbp.init_state(network, optimizer, params, args.seed)
            measured = [(0, np.asarray(layer_norms(network, params, *probe)))]

            def record(result, network=network, measured=measured):
                epoch = int(result.state.epoch)
                norms = layer_norms(network, result.params, *probe)
                measured.append((epoch, np.asarray(norms)))

            progress = common.Progress(f"{activation}/{init}", args.epochs, args.quiet)

            def callback(result, record=record, progress=progress):
                record(result)
                progress(result)

            try:
                result = jbp.fit(
                    network,
                    state,
                    x,
                    t,
                    optimizer,
                    args.epochs,
                    batch_size=args.batch_size,
                    loss="cross_entropy",
                    chunk_epochs=args.measure_every,
                    callback=callback,
                    on_divergence="return",
                )
            finally:
                progress.close()
            curves[activation, init] = {
                "measured": measured,
                "train_loss": result.history.train_loss,
                "train_accuracy": result.history.train_accuracy,
            }
    return curves


def plot(args, at_init: dict, training: dict) -> plt.Figure:
    """Draw one figure: a row per init at initialisation, one row in training."""
    columns = len(args.activations)
    figure, axes = plt.subplots(
        3, columns, figsize=(5 * columns, 12), sharey="row", squeeze=False
    )
    depth_colours = plt.cm.viridis(np.linspace(0, 1, len(args.depths)))
    for column, activation in enumerate(args.activations):
        for row, init in enumerate(INITS):
            axis = axes[row, column]
            for colour, depth in zip(depth_colours, args.depths, strict=True):
                norms = at_init[activation, init, depth]
                axis.plot(
                    np.arange(1, depth + 1),
                    norms,
                    color=colour,
                    marker=".",
                    label=f"depth {depth}",
                )
            axis.set_yscale("log")
            axis.set_title(f"{activation}, {init.replace('_', ' ')}: at init")
            axis.set_xlabel("layer (1 = input side)")

        axis = axes[2, column]
        for init, style in zip(INITS, ("-", "--"), strict=True):
            measured = training[activation, init]["measured"]
            colours = plt.cm.plasma(np.linspace(0, 0.85, len(measured)))
            for colour, (epoch, norms) in zip(colours, measured, strict=True):
                axis.plot(
                    np.arange(1, len(norms) + 1),
                    norms,
                    style,
                    color=colour,
                    label=f"{init.split('_')[0]}, epoch {epoch}",
                )
        axis.set_yscale("log")
        axis.set_title(f"{activation}, depth {args.train_depth}: during training")
        axis.set_xlabel("layer (1 = input side)")

    for axis in axes.flat:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for row in range(3):
        axes[row, 0].set_ylabel("gradient norm ||dE/dw||")
    axes[0, -1].legend(fontsize="small", loc="lower right")
    axes[2, -1].legend(fontsize="x-small", loc="lower right", ncol=2)
    figure.suptitle(
        "Per-layer gradient norms: sigmoid gradients vanish toward the input as "
        "depth grows; tanh and ReLU with a fitting init keep them level"
    )
    figure.tight_layout()
    return figure


def experiment(args: argparse.Namespace) -> list[Path]:
    """Measure, train, and write the metrics and the figure."""
    if args.train_depth < 2 or min(args.depths) < 2:
        raise jbp.ValidationError(
            "--depths and --train-depth must be at least 2 (one hidden layer and "
            "the output layer)"
        )
    x, t = load_digits()
    probe = (jnp.asarray(x[:256]), jnp.asarray(t[:256]))
    at_init = measure_at_init(args, *probe)
    training = measure_in_training(args, x, t, probe)

    metrics = {
        "width": args.width,
        "depths": args.depths,
        "train_depth": args.train_depth,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "at_init": {
            f"{activation}/{init}/depth{depth}": norms.tolist()
            for (activation, init, depth), norms in at_init.items()
        },
        "during_training": {
            f"{activation}/{init}": {
                "epochs": [epoch for epoch, _ in curve["measured"]],
                "norms": [norms.tolist() for _, norms in curve["measured"]],
                "final_train_loss": float(curve["train_loss"][-1]),
                "final_train_accuracy": float(curve["train_accuracy"][-1]),
            }
            for (activation, init), curve in training.items()
        },
    }
    return [
        common.write_metrics(args.out, metrics),
        common.save_figure(plot(args, at_init, training), args.out, "gradient_norms"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the experiment on ``argv`` and return the exit status."""
    return common.run(build_parser(), experiment, argv)


if __name__ == "__main__":
    raise SystemExit(main())
