"""Teach XOR to 2-2-1 and 2-4-1 sigmoid networks, and show how symmetry stops them.

Three starts are compared for each network:

- ``random``: Glorot-normal weights, a new draw for each seed;
- ``equal``: every weight the same constant. Every hidden neuron then computes the
  same output and receives the same gradient, so the hidden neurons stay identical
  forever and the network cannot represent XOR;
- ``zeros``: every weight zero, a special case of ``equal``.

The metrics record how far the hidden neurons' weights drift apart. Under the
``equal`` start, float32 rounding can separate them by a tiny amount, far too
little to break the symmetry within the run.

A run succeeds when all four outputs fall on the right side of 0.5.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from matplotlib.colors import Normalize

import jbp

NAME = "xor"
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
T = np.array([[0], [1], [1], [0]], np.float32)
HIDDEN = (2, 4)
STARTS = ("random", "equal", "zeros")


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = common.make_parser(
        NAME,
        "Train 2-2-1 and 2-4-1 sigmoid networks on XOR with full-batch SGD from "
        "random, equal and zero weights; report success rates and plot decision "
        "boundaries.",
        seed_help="seed of the first random start; start i uses seed + i",
    )
    parser.add_argument(
        "--epochs",
        type=common.positive_int,
        default=4000,
        help="full-batch SGD steps per run (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds",
        type=common.positive_int,
        default=20,
        help="random initialisations per network (default: %(default)s)",
    )
    parser.add_argument(
        "--learning-rate",
        type=common.positive_float,
        default=2.0,
        help="SGD learning rate (default: %(default)s)",
    )
    parser.add_argument(
        "--equal-weight",
        type=common.float32_number,
        default=0.5,
        help="the value of every weight for the 'equal' start (default: %(default)s)",
    )
    return parser


def initializer(start: str, equal_weight: float):
    """Return the weight initialiser of a start; None picks Glorot for sigmoid."""
    if start == "random":
        return None
    if start == "equal":
        return jax.nn.initializers.constant(equal_weight)
    return jax.nn.initializers.zeros


def train_one(
    network: jbp.Network,
    optimizer: optax.GradientTransformation,
    params: jbp.Params,
    epochs: int,
) -> jbp.FitResult:
    """Train full-batch on the four XOR examples for ``epochs`` steps."""
    state = jbp.init_state(network, optimizer, params, key=0)
    return jbp.fit(
        network, state, X, T, optimizer, epochs, batch_size=len(X), loss="half_sse"
    )


def plot_boundaries(examples: dict, title: str) -> plt.Figure:
    """Draw each network's output over the input square, with the four examples."""
    grid = np.linspace(-0.5, 1.5, 101, dtype=np.float32)
    mesh = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)
    figure, axes = plt.subplots(
        len(HIDDEN), len(STARTS), figsize=(11, 7), sharex=True, sharey=True
    )
    for row, hidden in enumerate(HIDDEN):
        for column, start in enumerate(STARTS):
            axis = axes[row, column]
            network, params, succeeded = examples[hidden, start]
            out = np.asarray(jbp.forward(network, params, jnp.asarray(mesh)))
            axis.contourf(
                grid,
                grid,
                out.reshape(len(grid), len(grid)),
                levels=np.linspace(0.0, 1.0, 21),
                cmap="coolwarm",
            )
            if out.min() < 0.5 < out.max():
                axis.contour(
                    grid,
                    grid,
                    out.reshape(len(grid), len(grid)),
                    levels=[0.5],
                    colors="black",
                )
            axis.scatter(
                X[:, 0],
                X[:, 1],
                c=T[:, 0],
                cmap="coolwarm",
                edgecolors="black",
                s=80,
                vmin=0,
                vmax=1,
            )
            verdict = "learns XOR" if succeeded else "fails"
            axis.set_title(f"2-{hidden}-1, {start} start: {verdict}")
    scale = plt.cm.ScalarMappable(norm=Normalize(0.0, 1.0), cmap="coolwarm")
    figure.colorbar(scale, ax=axes, label="network output")
    figure.suptitle(title)
    return figure


def plot_losses(curves: dict, title: str) -> plt.Figure:
    """Plot every run's loss against the step, one panel per network."""
    figure, axes = plt.subplots(1, len(HIDDEN), figsize=(11, 4), sharey=True)
    colours = {"random": "tab:blue", "equal": "tab:orange", "zeros": "tab:red"}
    for axis, hidden in zip(axes, HIDDEN, strict=True):
        for start in STARTS:
            for i, losses in enumerate(curves[hidden, start]):
                axis.plot(
                    losses,
                    color=colours[start],
                    alpha=0.4,
                    linewidth=0.8,
                    label=start if i == 0 else None,
                )
        axis.set_yscale("log")
        axis.set_xlabel("step")
        axis.set_title(f"2-{hidden}-1")
        axis.legend()
    axes[0].set_ylabel("half sum of squared errors (mean over 4 examples)")
    figure.suptitle(title)
    return figure


def experiment(args: argparse.Namespace) -> list[Path]:
    """Train every network from every start and write the results."""
    optimizer = optax.sgd(args.learning_rate)
    metrics: dict = {
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "seeds": args.seeds,
        "networks": {},
    }
    curves: dict = {}
    examples: dict = {}
    for hidden in HIDDEN:
        network = jbp.Network((2, hidden, 1), ("sigmoid", "sigmoid"))
        entry = metrics["networks"][f"2-{hidden}-1"] = {}
        for start in STARTS:
            # Equal and zero starts draw nothing at random, so one run shows them.
            seeds = range(args.seeds) if start == "random" else range(1)
            init = initializer(start, args.equal_weight)
            outcomes, curves[hidden, start] = [], []
            spread = []
            for seed in seeds:
                params = jbp.init_params(
                    network, jax.random.key(args.seed + seed), initializer=init
                )
                result = train_one(network, optimizer, params, args.epochs)
                out = np.asarray(jbp.forward(network, result.params, X))
                succeeded = bool(np.all((out > 0.5) == (T > 0.5)))
                outcomes.append(succeeded)
                curves[hidden, start].append(result.history.step_loss)
                hidden_weights = np.asarray(result.params[0].w)
                spread.append(float(np.ptp(hidden_weights, axis=0).max()))
                if (hidden, start) not in examples or (
                    succeeded and not examples[hidden, start][2]
                ):
                    examples[hidden, start] = (network, result.params, succeeded)
            entry[start] = {
                "runs": len(outcomes),
                "successes": int(sum(outcomes)),
                "success_rate": sum(outcomes) / len(outcomes),
                "final_loss": [float(c[-1]) for c in curves[hidden, start]],
                "max_hidden_weight_spread": max(spread),
            }
            common.log.info(
                "2-%d-1 %s start: %d of %d runs learn XOR; hidden neurons' weights "
                "differ by at most %.3g",
                hidden,
                start,
                sum(outcomes),
                len(outcomes),
                max(spread),
            )
    rates = ", ".join(
        f"2-{h}-1 {metrics['networks'][f'2-{h}-1']['random']['successes']}/{args.seeds}"
        for h in HIDDEN
    )
    return [
        common.write_metrics(args.out, metrics),
        common.save_figure(
            plot_boundaries(
                examples, f"XOR decision boundaries (random starts: {rates} succeed)"
            ),
            args.out,
            "boundaries",
        ),
        common.save_figure(plot_losses(curves, "XOR loss per run"), args.out, "losses"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the experiment on ``argv`` and return the exit status."""
    return common.run(build_parser(), experiment, argv)


if __name__ == "__main__":
    raise SystemExit(main())
