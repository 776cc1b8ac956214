"""``jbp check``: gradients by the chain rule, jax.grad and finite differences."""

from __future__ import annotations

import argparse
import json
import sys

from jbp.gradcheck import (
    EXACT_RTOL,
    FD_ROUNDING,
    FD_RTOL,
    METHODS,
    STEP_SCALE,
    GradientCheck,
    check_gradients,
)
from jbp.netfile import NetworkFile, read_network_file
from jbp.render.notation import number_text

EXIT_DISAGREE = 1


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``check`` on the ``jbp`` subcommand parser."""
    parser = commands.add_parser(
        "check",
        help="compare the chain rule, jax.grad and finite differences",
        description="Compute the gradient of the loss three ways in float64: the "
        "explicit chain rule, jax.grad, and central finite differences with step "
        f"h = {STEP_SCALE:.3g} * max(1, |parameter|) (the cube root of the machine "
        "epsilon u). For each layer, print the largest absolute and relative "
        "difference of each pair, the tolerance and a verdict. Entries a and b agree "
        "when |a - b| <= atol + rtol * max(|a|, |b|). For finite differences, atol "
        f"= {FD_ROUNDING:g} u |E| / h, the rounding error of the loss over the "
        "step, so that saturated units with tiny gradients pass, and rtol = "
        f"{FD_RTOL:g}. The chain rule and jax.grad are held to rtol = "
        f"{EXACT_RTOL:g} and atol = {FD_ROUNDING:g} u times the largest gradient. "
        "Exit status: 0 when all three agree, 1 when they do not, 2 on bad input.",
    )
    parser.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="network file (.json or .toml); default: the built-in worked example",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="write a JSON object with every gradient of each method (one row per "
        "neuron, as in the file) and every comparison, instead of the table",
    )
    parser.set_defaults(run=run)


def _layer_names(file: NetworkFile, layer: int) -> str:
    return ", ".join(file.names.neurons[layer])


def format_report(file: NetworkFile, result: GradientCheck) -> str:
    """Lay the comparisons out as a table, one block of rows per layer."""
    headers = (
        "layer",
        "methods",
        "max abs diff",
        "max rel diff",
        "atol",
        "rtol",
        "verdict",
    )
    cells = [headers]
    for c in result.comparisons:
        cells.append(
            (
                f"{c.layer + 1} ({_layer_names(file, c.layer)})",
                " vs ".join(c.methods),
                f"{c.max_abs:.3g}",
                f"{c.max_rel:.3g}",
                f"{c.atol:.3g}",
                f"{c.rtol:g}",
                "agree" if c.agree else "DISAGREE",
            )
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        f"Gradient check of {file.source}: loss {file.loss}, E = "
        f"{number_text(result.loss)}, float64",
        f"finite differences: central, h = {STEP_SCALE:.3g} * max(1, |parameter|)",
        "",
    ]
    for i, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    if result.agree:
        lines.append("verdict: the chain rule, jax.grad and finite differences agree")
    else:
        lines.append("verdict: the methods DISAGREE; see the rows marked DISAGREE")
    return "\n".join(line.rstrip() for line in lines)


def to_json(file: NetworkFile, result: GradientCheck) -> dict:
    """Every gradient of each method, in the file's layout, and every comparison."""
    layers = []
    for layer in range(file.network.num_layers):
        entry = {
            "layer": layer + 1,
            "neurons": list(file.names.neurons[layer]),
            "weight_names": [list(row) for row in file.names.weights[layer]],
            "bias_names": file.names.biases[layer]
            if isinstance(file.names.biases[layer], str)
            else list(file.names.biases[layer]),
        }
        for method in METHODS:
            dw, db = result.gradients[method][layer]
            entry[method] = {"weights": dw.tolist(), "bias": db.tolist()}
        entry["comparisons"] = [
            {
                "methods": list(c.methods),
                "max_abs_diff": c.max_abs,
                "max_rel_diff": c.max_rel,
                "atol": c.atol,
                "rtol": c.rtol,
                "agree": c.agree,
            }
            for c in result.comparisons
            if c.layer == layer
        ]
        layers.append(entry)
    return {
        "source": file.source,
        "loss": file.loss,
        "E": result.loss,
        "finite_difference_step": f"{STEP_SCALE!r} * max(1, |parameter|)",
        "layers": layers,
        "agree": result.agree,
    }


def run(args: argparse.Namespace) -> int:
    """Print the report (or JSON); return 0 when the methods agree, else 1."""
    file = read_network_file(args.file)
    result = check_gradients(file)
    if args.json:
        sys.stdout.write(json.dumps(to_json(file, result), indent=2) + "\n")
    else:
        sys.stdout.write(format_report(file, result) + "\n")
    return 0 if result.agree else EXIT_DISAGREE
