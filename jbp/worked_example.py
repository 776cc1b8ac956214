"""The classic worked example, recomputed and compared with the figures it prints.

The example ("A Step by Step Backpropagation Example", Matt Mazur, 2015, retold in
many tutorials) trains a 2-2-2 sigmoid network on one pair, x = (0.05, 0.10) and
t = (0.01, 0.99), with E = sum 1/2 (t - out)^2 and SGD at learning rate 0.5. Its
biases are shared within a layer and never trained.

:func:`compare` recomputes every figure in float64 and matches it against the
printed one to the printed digits. When a figure does not match, it tries the other
update rule, the loss-history entry before the last update, and a misplaced decimal
point, and the row's note names whichever reproduces the printed figure.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np
import optax

from jbp.backprop import loss_value
from jbp.netfile import read_network_file
from jbp.network import forward, forward_trace
from jbp.training import RULES, train

DOCUMENT_STEPS = 10_000
"""How many rounds the example trains before printing its last figures."""

# The figures as the example prints them, as text, so that their digits count.
# None marks a figure that was an image and is lost.
PRINTED = {
    "net h1": "0.3775",
    "net h2": "0.3925",
    "out h1": "0.593269992",
    "out h2": "0.596884378",
    "net o1": "1.10590597",
    "net o2": "1.2249214",
    "out o1": None,
    "out o2": None,
    "E before training": "0.298371109",
    "w5 after one step": "0.35891648",
    "w6 after one step": "408666186",
    "w7 after one step": "0.511301270",
    "w8 after one step": "0.561370121",
    "w1 after one step": "0.149780716",
    "w2 after one step": "0.19956143",
    "w3 after one step": "0.24975114",
    "w4 after one step": "0.29950229",
    "E after one step": "0.291027924",
    "E after {n} steps": "0.0000351085",
    "out o1 after {n} steps": "0.159121960",
    "out o2 after {n} steps": "0.984065734",
}


class Row(NamedTuple):
    """One compared figure.

    Attributes:
        quantity: what the figure is.
        document: the figure as printed, or None if the example does not print it.
        jbp: jbp's value under the chosen rule.
        agrees: whether ``jbp`` rounds to the printed figure (True when nothing is
            printed, since nothing disagrees).
        verdict: ``agrees``, ``misprint``, ``explained``, ``differs`` or
            ``not printed``.
        note: for a figure that does not agree, what reproduces it.
    """

    quantity: str
    document: str | None
    jbp: float
    agrees: bool
    verdict: str
    note: str


class Candidate(NamedTuple):
    """A value that might explain a printed figure, and how it was obtained."""

    value: float
    how: str


def rounds_to(printed: str, value: float) -> bool:
    """Check whether ``value``, rounded to the decimals of ``printed``, equals it."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(value - float(printed)) <= 0.5 * 10.0**-decimals * (1 + 1e-9)


def misprint_of(printed: str, value: float) -> bool:
    """Check whether ``printed`` is ``value`` with its decimal point moved.

    The significant digits of both are compared after dropping trailing zeros, with
    ``value`` rounded to as many significant digits as the figure shows.
    """
    digits = printed.replace(".", "").lstrip("0").rstrip("0")
    if not digits or value == 0 or rounds_to(printed, value):
        return False
    exponent = math.floor(math.log10(abs(value)))
    scaled = round(abs(value) / 10.0 ** (exponent - len(digits) + 1))
    return str(scaled).rstrip("0") == digits


def _final_values(network, params, x, t, steps, rule):
    result = train(network, params, x, t, optax.sgd(0.5), steps, rule=rule)
    final = np.asarray(forward(network, result.params, x))
    return {
        "params": result.params,
        "E": float(loss_value(network, result.params, x, t)),
        "history": np.asarray(result.losses),
        "out": final,
    }


def _rule_values(rule: str, steps: int) -> dict[str, float]:
    """Compute every quantity under ``rule`` as a float, keyed by its label."""
    example = read_network_file()
    network, x, t = example.network, example.x, example.t
    params = example.params(np.float64)

    trace = forward_trace(network, params, x)
    values: dict = {}
    for layer, prefix in enumerate(("h", "o")):
        for j in range(2):
            values[f"net {prefix}{j + 1}"] = float(trace.nets[layer][j])
            values[f"out {prefix}{j + 1}"] = float(trace.outs[layer][j])
    values["E before training"] = float(loss_value(network, params, x, t))

    one = _final_values(network, params, x, t, 1, rule)
    names = example.names.weights
    for layer in (1, 0):
        w = np.asarray(one["params"][layer].w)
        for j in range(2):
            for k in range(2):
                values[f"{names[layer][j][k]} after one step"] = float(w[j, k])
    values["E after one step"] = one["E"]

    if steps:
        long = _final_values(network, params, x, t, steps, rule)
        values["E after {n} steps"] = long["E"]
        values["history"] = float(long["history"][-1])
        for j in range(2):
            values[f"out o{j + 1} after {{n}} steps"] = float(long["out"][j])
    return values


def _candidates(key: str, rule: str, by_rule: dict, steps: int) -> list[Candidate]:
    other = next(r for r in RULES if r != rule)
    found = [Candidate(by_rule[rule][key], f"the {rule} rule")]
    if key in by_rule[other]:
        found.append(Candidate(by_rule[other][key], f"the {other} rule"))
    if key == "E after {n} steps":
        for name in (rule, other):
            found.append(
                Candidate(
                    by_rule[name]["history"],
                    f"the {name} rule's loss history entry {steps - 1:,} (the loss "
                    f"measured before update {steps:,})",
                )
            )
    return found


def _significant(printed: str, value: float) -> str:
    digits = printed.replace(".", "").lstrip("0").rstrip("0")
    return f"{value:.{max(1, len(digits))}g}"


def _verdict(printed: str, candidates: list[Candidate]) -> tuple[bool, str, str]:
    value = candidates[0].value
    if rounds_to(printed, value):
        return True, "agrees", ""
    if misprint_of(printed, value):
        return (
            False,
            "misprint",
            f"misprint of {_significant(printed, value)}: the decimal point is moved",
        )
    for candidate in candidates[1:]:
        if rounds_to(printed, candidate.value):
            shown = _significant(printed, candidate.value)
            note = f"{candidate.how} gives {shown}, which agrees"
            return False, "explained", note
        if misprint_of(printed, candidate.value):
            shown = _significant(printed, candidate.value)
            note = (
                f"misprint of {shown}, which {candidate.how} gives: the decimal "
                "point is moved"
            )
            return False, "explained", note
    return False, "differs", "neither update rule nor the loss history reproduces it"


def compare(rule: str = "gradient", steps: int = DOCUMENT_STEPS) -> list[Row]:
    """Recompute the worked example under ``rule`` and compare it with the printout.

    Runs in float64 whatever the global setting, because float32 drifts in the
    eighth significant digit.

    Args:
        rule: the update rule for the rows after the first update.
        steps: how many steps the long run trains; the example's own figures are
            compared only when this is 10,000.

    Returns:
        One :class:`Row` per figure, in the order the example prints them.
    """
    with jax.enable_x64(True):
        by_rule = {name: _rule_values(name, steps) for name in RULES}

    rows = []
    for template, printed in PRINTED.items():
        if "{n}" in template and not steps:
            continue
        quantity = template.format(n=f"{steps:,}")
        if steps == 1:
            quantity = quantity.replace("after 1 steps", "after 1 step")
        candidates = _candidates(template, rule, by_rule, steps)
        value = candidates[0].value
        if "{n}" in template and steps != DOCUMENT_STEPS:
            note = f"the example prints this after {DOCUMENT_STEPS:,} steps"
            rows.append(Row(quantity, None, value, True, "not printed", note))
        elif printed is None:
            note = "the example showed this figure as an image, which is lost"
            rows.append(Row(quantity, None, value, True, "not printed", note))
        else:
            agrees, verdict, note = _verdict(printed, candidates)
            rows.append(Row(quantity, printed, value, agrees, verdict, note))
    return rows
