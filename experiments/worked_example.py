"""Train the worked example's 2-2-2 network under both update rules and plot E.

The network, its starting weights, the pair x = (0.05, 0.10), t = (0.01, 0.99) and
SGD at learning rate 0.5 come from the bundled network file, as ``jbp reproduce``
uses them. Training runs in float64 in chunks of compiled steps, so the progress bar
moves while the loss falls over the 10,000 steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common
import jax
import matplotlib.pyplot as plt
import numpy as np
import optax

import jbp
from jbp.worked_example import DOCUMENT_STEPS, PRINTED

NAME = "worked_example"


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = common.make_parser(
        NAME,
        "Train the classic 2-2-2 sigmoid network on its single example with SGD at "
        "learning rate 0.5, under the gradient and the layerwise update rules, and "
        "plot the loss on a log scale.",
    )
    parser.add_argument(
        "--steps",
        type=common.positive_int,
        default=DOCUMENT_STEPS,
        help="SGD steps per rule (default: %(default)s, as in the example)",
    )
    parser.add_argument(
        "--chunk-steps",
        type=common.positive_int,
        default=1000,
        help="steps per compiled call; the progress bar updates between calls "
        "(default: %(default)s)",
    )
    return parser


def train_rule(
    example: jbp.NetworkFile, rule: str, steps: int, chunk: int, quiet: bool
) -> tuple[jbp.Params, np.ndarray]:
    """Train ``steps`` steps under ``rule`` in chunks; return params and losses."""
    network = example.network
    params = example.params(np.float64)
    optimizer = optax.sgd(example.learning_rate)
    opt_state = jbp.init_opt_state(network, optimizer, params)
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=rule, unit="step", leave=False)
    losses = []
    done = 0
    try:
        while done < steps:
            length = min(chunk, steps - done)
            result = jbp.train(
                network,
                params,
                example.x,
                example.t,
                optimizer,
                length,
                loss=example.loss,
                rule=rule,
                opt_state=opt_state,
            )
            params, opt_state = result.params, result.opt_state
            losses.append(np.asarray(result.losses))
            done += length
            if bar is not None:
                bar.update(length)
                bar.set_postfix(E=f"{losses[-1][-1]:.4g}")
    finally:
        if bar is not None:
            bar.close()
    return params, np.concatenate(losses)


def plot_losses(curves: dict[str, np.ndarray], printed: float, steps: int):
    """Plot E against the step for each rule, on log axes."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for rule, losses in curves.items():
        axis.plot(np.arange(1, len(losses) + 1), losses, label=f"{rule} rule")
    axis.axhline(
        printed,
        color="grey",
        linestyle=":",
        label=f"printed E after {DOCUMENT_STEPS:,} rounds",
    )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("step (loss measured before that step's update)")
    axis.set_ylabel("E = sum 1/2 (t - out)^2")
    axis.set_title(f"Worked example, SGD at learning rate 0.5, {steps:,} steps")
    axis.legend()
    return figure


def experiment(args: argparse.Namespace) -> list[Path]:
    """Train under both rules and write the metrics and the loss plot."""
    example = jbp.read_network_file()
    metrics: dict = {"steps": args.steps, "dtype": "float64", "rules": {}}
    curves = {}
    with jax.enable_x64(True):
        for rule in jbp.RULES:
            params, losses = train_rule(
                example, rule, args.steps, args.chunk_steps, args.quiet
            )
            final = jbp.loss_value(
                example.network, params, example.x, example.t, example.loss
            )
            out = np.asarray(jbp.forward(example.network, params, example.x))
            curves[rule] = losses
            metrics["rules"][rule] = {
                "E_before_training": float(losses[0]),
                "E_before_last_update": float(losses[-1]),
                "E_after_training": float(final),
                "out_after_training": out.tolist(),
            }
            common.log.info(
                "%s rule: E after %d steps = %.6g", rule, args.steps, float(final)
            )
    printed = float(PRINTED["E after {n} steps"])
    metrics["printed_E_after_10000_rounds"] = printed
    return [
        common.write_metrics(args.out, metrics),
        common.save_figure(plot_losses(curves, printed, args.steps), args.out, "loss"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the experiment on ``argv`` and return the exit status."""
    return common.run(build_parser(), experiment, argv)


if __name__ == "__main__":
    raise SystemExit(main())
