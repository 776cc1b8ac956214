"""``jbp reproduce``: the worked example recomputed, one row per printed figure."""

from __future__ import annotations

import argparse
import json
import sys

from jbp.cli.options import nonnegative_int
from jbp.training import RULES
from jbp.worked_example import DOCUMENT_STEPS, Row, compare

HEADERS = ("quantity", "document", "jbp", "verdict")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``reproduce`` on the ``jbp`` subcommand parser."""
    parser = commands.add_parser(
        "reproduce",
        help="recompute the worked example and compare it with its printed figures",
        description="Recompute every figure of the classic 2-2-2 backpropagation "
        "example in float64 and compare it with the figure the example prints, to "
        "the printed digits. Each figure that differs gets a note that names the "
        "update rule, loss-history entry or misprint that reproduces it.",
    )
    parser.add_argument(
        "--rule",
        choices=RULES,
        default="gradient",
        help="update rule: 'gradient' is true gradient descent; 'layerwise' updates "
        "the output layer first and carries the hidden deltas through its updated "
        "weights, as the example's later figures do (default: %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=nonnegative_int,
        default=DOCUMENT_STEPS,
        metavar="N",
        help="number of SGD steps of the long run; the example's own figures are "
        "for %(default)s (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="write the rows as a JSON list of objects with the keys quantity, "
        "document (a number or null), jbp, agrees, note, printed (the figure as the "
        "example prints it, as text) and verdict, instead of the table",
    )
    parser.set_defaults(run=run)


def _to_json(rows: list[Row]) -> str:
    objects = [
        {
            "quantity": row.quantity,
            "document": None if row.document is None else float(row.document),
            "jbp": row.jbp,
            "agrees": row.agrees,
            "note": row.note,
            "printed": row.document,
            "verdict": row.verdict,
        }
        for row in rows
    ]
    return json.dumps(objects, indent=2)


def format_table(rows: list[Row], rule: str) -> str:
    """Lay the rows out as an aligned text table, with numbered notes below it."""
    cells = [HEADERS]
    notes = []
    for row in rows:
        verdict = row.verdict
        if row.note:
            notes.append(row.note)
            verdict = f"{verdict} [{len(notes)}]"
        document = "-" if row.document is None else row.document
        cells.append((row.quantity, document, f"{row.jbp:.12g}", verdict))
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    lines = [f"Worked example, {rule} rule, float64"]
    for i, line in enumerate(cells):
        lines.append(
            " | ".join(
                cell.ljust(w) for cell, w in zip(line, widths, strict=True)
            ).rstrip()
        )
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths))
    lines.append("")
    lines.extend(f"[{i}] {note}" for i, note in enumerate(notes, start=1))
    agreed = sum(row.verdict == "agrees" for row in rows)
    printed = sum(row.document is not None for row in rows)
    lines.append(
        f"{agreed} of {printed} printed figures agree to their printed digits; "
        f"{printed - agreed} are explained above or differ."
    )
    lines.append(
        "Rules: 'gradient' is true gradient descent; 'layerwise' updates the output "
        "weights first and carries the hidden deltas through the updated weights."
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the comparison table (or JSON) and return 0."""
    rows = compare(rule=args.rule, steps=args.steps)
    output = _to_json(rows) if args.json else format_table(rows, args.rule)
    sys.stdout.write(output + "\n")
    return 0
