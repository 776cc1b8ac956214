"""The layout of an explanation, shared by the text, Markdown and LaTeX writers.

:func:`write_document` walks a :class:`~jbp.derivation.Derivation` and calls a
:class:`Writer` to add headings, paragraphs, equations and tables. Prose that
contains maths is built from :class:`Math` pieces, so each writer can set it in its
own notation.
"""

from __future__ import annotations

from typing import NamedTuple

from jbp.derivation import (
    LOGITS,
    SOFTMAX_JACOBIAN,
    Derivation,
    LayerTable,
    Section,
)
from jbp.render.notation import Notation, equation_parts, number_text


class Math(NamedTuple):
    """A piece of maths inside prose, in plain text and in LaTeX."""

    text: str
    latex: str


Prose = list[str | Math]


class Writer:
    """The output format: how headings, paragraphs, equations and tables look."""

    notation: Notation
    uses_latex = False

    def __init__(self) -> None:
        self.lines: list[str] = []

    def heading(self, level: int, title: Prose) -> None:
        """Add a heading; level 1 is the document title."""
        raise NotImplementedError

    def paragraph(self, prose: Prose) -> None:
        """Add a paragraph of prose."""
        raise NotImplementedError

    def equation(self, parts: list[str], note: Prose | None = None) -> None:
        """Add one equation, its sides already written in :attr:`notation`."""
        raise NotImplementedError

    def table(self, headers: list[Prose], rows: list[list[str]]) -> None:
        """Add a table; cells of ``rows`` are numbers or names, already written."""
        raise NotImplementedError

    def finish(self, title: str) -> str:
        """Return the whole document."""
        return "\n".join(self.lines).rstrip() + "\n"


LOSS_FORMULAS = {
    "half_sse": Math(
        "E = sum_k 1/2 (t_k - out_k)^2",
        r"E = \sum_k \frac{1}{2}\left(t_k - \mathrm{out}_k\right)^{2}",
    ),
    "mse": Math(
        "E = sum_k (t_k - out_k)^2 / K",
        r"E = \frac{1}{K}\sum_k \left(t_k - \mathrm{out}_k\right)^{2}",
    ),
    "cross_entropy": Math(
        "E = -sum_k t_k log p_k, p = softmax(net)",
        r"E = -\sum_k t_k \log p_k,\ p = \mathrm{softmax}(\mathrm{net})",
    ),
    "binary_cross_entropy": Math(
        "E = -sum_k [t_k log p_k + (1 - t_k) log(1 - p_k)], p = sigmoid(net)",
        r"E = -\sum_k \left[t_k \log p_k + (1 - t_k)\log(1 - p_k)\right],"
        r"\ p = \sigma(\mathrm{net})",
    ),
}


def _layer_title(derivation: Derivation, layer: int) -> str:
    file = derivation.file
    top = file.network.num_layers - 1
    names = ", ".join(file.names.neurons[layer])
    kind = "output layer" if layer == top else f"hidden layer {layer + 1}"
    return f"{kind}: {names} ({file.network.activations[layer]})"


def _example_prefix(example: int | None) -> str:
    return "" if example is None else f"Example {example}, "


def _section_title(derivation: Derivation, section: Section) -> Prose:
    prefix = _example_prefix(section.example)
    if section.kind == "forward":
        title = f"forward pass, {_layer_title(derivation, section.layer)}"
    elif section.kind == "error":
        if section.example is None and derivation.examples > 1:
            return ["Error of the batch"]
        title = "error"
    elif section.kind == "backward":
        title = f"backward pass, {_layer_title(derivation, section.layer)}"
    elif section.kind == "mean":
        return [f"Gradients: the mean over the {derivation.examples} examples"]
    else:
        rate = number_text(derivation.file.learning_rate)
        return [
            "Update: ",
            Math(
                f"w+ = w - eta * dE/dw, eta = {rate}",
                r"w^{+} = w - \eta \frac{\partial E}{\partial w},\ \eta = " + rate,
            ),
        ]
    text = prefix + title
    return [text[0].upper() + text[1:]]


def _introduction(derivation: Derivation) -> list[Prose]:
    file = derivation.file
    network = file.network
    sizes = "-".join(str(size) for size in network.sizes)
    examples = derivation.examples
    paragraphs: list[Prose] = []
    if file.description:
        paragraphs.append([file.description])
    paragraphs.append(
        [
            f"Network {sizes} ({', '.join(network.activations)}), loss {file.loss}: ",
            LOSS_FORMULAS[file.loss],
            f". Learning rate {number_text(file.learning_rate)}, "
            f"{examples} example{'s' if examples > 1 else ''}. Every number is "
            "computed in float64 and printed to 9 significant digits.",
        ]
    )
    if examples > 1:
        paragraphs.append(
            [
                "The error of the batch is the mean of the per-example errors, ",
                Math(
                    "E = 1/N sum_n E^(n)",
                    r"E = \frac{1}{N}\sum_n E^{(n)}",
                ),
                ", so every gradient is the mean of the per-example gradients.",
            ]
        )
    form = derivation.output_form
    if form == LOGITS and file.loss == "cross_entropy":
        paragraphs.append(
            [
                "Cross-entropy reads the output layer's net input as logits, so the "
                "softmax Jacobian and the loss derivative collapse into ",
                Math(
                    "dE/dnet_k = p_k - t_k",
                    r"\frac{\partial E}{\partial "
                    r"\mathrm{net}_k} = p_k - t_k",
                ),
                ".",
            ]
        )
    elif form == LOGITS:
        paragraphs.append(
            [
                "Binary cross-entropy reads the net input as logits, so ",
                Math(
                    "dE/dnet_k = sigmoid(net_k) - t_k",
                    r"\frac{\partial E}"
                    r"{\partial \mathrm{net}_k} = \sigma(\mathrm{net}_k) - t_k",
                ),
                ".",
            ]
        )
    elif form == SOFTMAX_JACOBIAN:
        paragraphs.append(
            [
                "Softmax couples its outputs: ",
                Math(
                    "dout_k/dnet_j = out_k (delta_kj - out_j)",
                    r"\frac{\partial \mathrm{out}_k}{\partial \mathrm{net}_j} = "
                    r"\mathrm{out}_k\left(\delta_{kj} - \mathrm{out}_j\right)",
                ),
                ", so each output's ",
                Math("dE/dnet_j", r"\frac{\partial E}{\partial \mathrm{net}_j}"),
                " sums over every output k.",
            ]
        )
    if derivation.form == "delta":
        paragraphs.append(
            [
                "This network has more parameters times examples than the chain-rule "
                "form writes out one by one, so the backward pass is given as the "
                "delta recursion for each layer and a table per neuron."
            ]
        )
    return paragraphs


def write_document(derivation: Derivation, writer: Writer) -> str:
    """Lay out ``derivation`` with ``writer`` and return the finished document."""
    title = f"Backpropagation, step by step: {derivation.file.source}"
    writer.heading(1, [title])
    for paragraph in _introduction(derivation):
        writer.paragraph(paragraph)
    for section in derivation.sections:
        writer.heading(2, _section_title(derivation, section))
        for equation in section.equations:
            parts = equation_parts(writer.notation, equation)
            note = ["not trained"] if equation.note == "frozen" else None
            writer.equation(parts, note)
    if derivation.form == "delta":
        _write_delta_form(derivation, writer)
    return writer.finish(title)


def _delta_equations(derivation: Derivation, layer: int) -> list[Math]:
    file = derivation.file
    top = file.network.num_layers - 1
    if layer == top:
        if derivation.output_form == LOGITS:
            first = Math("delta_k = p_k - t_k", r"\delta_k = p_k - t_k")
        elif derivation.output_form == SOFTMAX_JACOBIAN:
            first = Math(
                "delta_j = sum_k dE/dout_k * out_k (delta_kj - out_j)",
                r"\delta_j = \sum_k \frac{\partial E}{\partial \mathrm{out}_k}"
                r"\mathrm{out}_k\left(\delta_{kj} - \mathrm{out}_j\right)",
            )
        else:
            first = Math(
                "delta_k = dE/dout_k * f'(net_k)",
                r"\delta_k = \frac{\partial E}{\partial \mathrm{out}_k} "
                r"f'\left(\mathrm{net}_k\right)",
            )
    else:
        first = Math(
            "delta_j = (sum_k delta_k^above * w_kj) * f'(net_j)",
            r"\delta_j = \left(\sum_k \delta^{\mathrm{above}}_k w_{kj}\right) "
            r"f'\left(\mathrm{net}_j\right)",
        )
    inputs = "x_i" if layer == 0 else "out_i"
    latex_input = "x_i" if layer == 0 else r"\mathrm{out}_i"
    equations = [first]
    if derivation.examples > 1:
        equations.append(
            Math(
                f"dE/dw_ji = 1/N sum_n delta_j^(n) * {inputs}^(n)",
                r"\frac{\partial E}{\partial w_{ji}} = \frac{1}{N}\sum_n "
                rf"\delta_j^{{(n)}} {latex_input}^{{(n)}}",
            )
        )
    else:
        equations.append(
            Math(
                f"dE/dw_ji = delta_j * {inputs}",
                rf"\frac{{\partial E}}{{\partial w_{{ji}}}} = \delta_j {latex_input}",
            )
        )
    if file.network.shared_bias[layer]:
        equations.append(
            Math(
                "dE/db = sum_j delta_j (one bias shared by the layer)",
                r"\frac{\partial E}{\partial b} = \sum_j \delta_j",
            )
        )
    else:
        equations.append(
            Math("dE/db_j = delta_j", r"\frac{\partial E}{\partial b_j} = \delta_j")
        )
    return equations


def _write_delta_form(derivation: Derivation, writer: Writer) -> None:
    for table in derivation.layers:
        _write_layer(derivation, writer, table)


def _cell(value: float | None) -> str:
    return "-" if value is None else number_text(value)


def _write_layer(derivation: Derivation, writer: Writer, table: LayerTable) -> None:
    writer.heading(2, [f"Backward pass, {_layer_title(derivation, table.layer)}"])
    writer.paragraph(["The delta recursion, with delta = dE/dnet:"])
    for math in _delta_equations(derivation, table.layer):
        writer.equation([math.latex if writer.uses_latex else math.text])

    batch = derivation.examples > 1
    headers: list[Prose] = [["example"]] if batch else []
    headers += [
        ["neuron"],
        ["net"],
        ["out"],
        [Math("dE/dout", r"\partial E / \partial \mathrm{out}")],
        [Math("dout/dnet", r"\partial \mathrm{out} / \partial \mathrm{net}")],
        [Math("delta = dE/dnet", r"\delta = \partial E / \partial \mathrm{net}")],
    ]
    rows = []
    for row in table.neurons:
        cells = [str(row.example)] if batch else []
        cells += [
            row.neuron,
            _cell(row.net),
            _cell(row.out),
            _cell(row.dE_dout),
            _cell(row.dout_dnet),
            _cell(row.delta),
        ]
        rows.append(cells)
    writer.table(headers, rows)

    parameter_headers: list[Prose] = [
        ["parameter"],
        ["value"],
        [Math("dE/dparameter", r"\partial E / \partial \theta")],
        ["after update"],
    ]
    for neuron in table.parameters:
        writer.paragraph([f"Parameters into {neuron.neuron}:"])
        writer.table(parameter_headers, [_parameter_cells(r) for r in neuron.rows])
    if table.shared_bias is not None:
        writer.paragraph(["The bias shared by the layer:"])
        writer.table(parameter_headers, [_parameter_cells(table.shared_bias)])


def _parameter_cells(row) -> list[str]:
    updated = number_text(row.updated)
    if not row.trains:
        updated += " (not trained)"
    return [row.name, number_text(row.value), number_text(row.gradient), updated]
