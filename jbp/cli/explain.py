"""``jbp explain``: the forward pass and the chain rule for every parameter."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jbp.cli.options import image_path, output_path
from jbp.derivation import CHAIN_RULE_LIMIT, FORMS, derive
from jbp.errors import ValidationError
from jbp.netfile import read_network_file
from jbp.render import WRITERS, render


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``explain`` on the ``jbp`` subcommand parser."""
    parser = commands.add_parser(
        "explain",
        help="write out the forward pass and the chain rule for every weight and bias",
        description="Derive every gradient of a small network by hand, with numbers: "
        "the net input and output of every neuron, every error term, the chain rule "
        "for every weight and bias (hidden weights as the sum over the paths through "
        "the layer above) and the update w+ = w - eta dE/dw. Numbers are float64, "
        "printed to 9 significant digits. Up to "
        f"{CHAIN_RULE_LIMIT} parameters times examples get one chain-rule line each; "
        "larger networks get the delta recursion per layer and a table per neuron.",
    )
    parser.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="network file (.json or .toml); default: the built-in worked example",
    )
    parser.add_argument(
        "--format",
        choices=tuple(WRITERS),
        default="text",
        help="output format: plain text, Markdown with GitHub maths, or a LaTeX "
        "document for pdflatex (default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        metavar="PATH",
        type=output_path,
        help="write the derivation to PATH instead of standard output",
    )
    parser.add_argument(
        "--plot",
        metavar="PATH.png",
        type=image_path,
        help="also draw the network to PATH.png (weights and dE/dw on the edges, "
        "net and out in the nodes; .svg and .pdf work too); needs matplotlib from "
        "the 'experiments' extra",
    )
    parser.add_argument(
        "--form",
        choices=FORMS,
        default="auto",
        help="'chain': one chain-rule line per parameter; 'delta': the delta "
        "recursion and a table per neuron; 'auto': 'chain' up to "
        f"{CHAIN_RULE_LIMIT} parameters times examples (default: %(default)s)",
    )
    parser.set_defaults(run=run)


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as error:
        raise ValidationError(f"cannot write {path!r}: {error.strerror}") from None


def run(args: argparse.Namespace) -> int:
    """Print or write the derivation, draw the plot if asked, and return 0."""
    if args.plot:
        from jbp.netplot import require_matplotlib

        require_matplotlib()
    file = read_network_file(args.file)
    derivation = derive(file, args.form)
    text = render(derivation, args.format)
    if args.output:
        _write(args.output, text)
        print(f"jbp explain: wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.plot:
        from jbp.netplot import plot_network

        try:
            plot_network(derivation, args.plot)
        except OSError as error:
            raise ValidationError(
                f"cannot write {args.plot!r}: {error.strerror}"
            ) from None
        print(f"jbp explain: wrote {args.plot}", file=sys.stderr)
    return 0
