"""Draw a network with matplotlib: weights on the edges, values in the nodes.

Each node shows its name, net input, output and bias. For a batch, the nodes show
the first example. Each edge shows its weight and, beside it, ``dE/dw``.
Matplotlib belongs to the ``experiments`` extra, so it is imported only when a
plot is drawn.
"""

from __future__ import annotations

from pathlib import Path

from jbp.derivation import Derivation
from jbp.errors import ValidationError
from jbp.render.notation import number_text

LABELLED_EDGES = 16
"""Networks with more weights than this get edges without labels.

NOTE: beyond about 16 edges the labels overlap (a 3-4-4-2 network has 36). A
larger network therefore shows ``|dE/dw|`` only as edge width and shade, and
``jbp explain`` prints the numbers.
"""


def require_matplotlib() -> None:
    """Raise unless matplotlib can be imported.

    Raises:
        ValidationError: naming the extra that installs it.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValidationError(
            "--plot needs matplotlib, which is not installed; install it with "
            "pip install 'jbp[experiments]'"
        ) from None


def _short(value: float) -> str:
    return f"{value:.4g}"


def plot_network(derivation: Derivation, path: str | Path) -> Path:
    """Draw ``derivation``'s network and save it to ``path`` (format from its suffix).

    Returns:
        The path written.

    Raises:
        ValidationError: if matplotlib is missing or cannot write that format.
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    path = Path(path)
    figure = Figure(figsize=(10, 6.5), layout="constrained")
    supported = figure.canvas.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in supported:
        raise ValidationError(
            f"cannot write a plot to {str(path)!r}: unknown image format "
            f"{suffix!r}; use one of: {', '.join(sorted(supported))}"
        )

    file = derivation.file
    sections = {
        (s.kind, s.layer): s for s in derivation.sections if s.example in (None, 1)
    }
    sizes = file.network.sizes
    columns = len(sizes)
    positions = []
    for layer, size in enumerate(sizes):
        x = layer / max(1, columns - 1)
        positions.append([(x, 1 - (j + 0.5) / size) for j in range(size)])

    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_xlim(-0.12, 1.12)
    axes.set_ylim(-0.05, 1.05)
    weights = sum(w.size for w in file.weights)
    labelled = weights <= LABELLED_EDGES
    largest = max(float(abs(g[0]).max()) for g in derivation.grads) or 1.0
    for layer, (w, (dw, _)) in enumerate(
        zip(file.weights, derivation.grads, strict=True)
    ):
        for j in range(w.shape[0]):
            for k in range(w.shape[1]):
                (x0, y0), (x1, y1) = positions[layer][k], positions[layer + 1][j]
                strength = abs(dw[j, k]) / largest
                axes.plot(
                    [x0, x1],
                    [y0, y1],
                    color=(0.2, 0.3, 0.8, 0.25 + 0.75 * strength),
                    linewidth=0.8 + 2.2 * strength,
                    zorder=1,
                )
                if labelled:
                    # Spread the labels of crossing edges: the k-th input's
                    # edges are labelled at their own fraction of the length.
                    fraction = 0.3 + 0.4 * k / max(1, w.shape[1] - 1)
                    xm, ym = x0 + fraction * (x1 - x0), y0 + fraction * (y1 - y0)
                    axes.text(
                        xm,
                        ym,
                        f"{file.names.weights[layer][j][k]}={_short(w[j, k])}\n"
                        f"dE/dw={_short(dw[j, k])}",
                        fontsize=7,
                        ha="center",
                        va="center",
                        zorder=3,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "0.8"},
                    )

    for layer, size in enumerate(sizes):
        for j in range(size):
            x, y = positions[layer][j]
            if layer == 0:
                name = file.names.inputs[j]
                value = file.x[j] if file.x.ndim == 1 else file.x[0, j]
                label = f"{name}\n{_short(value)}"
            else:
                name = file.names.neurons[layer - 1][j]
                forward = sections[("forward", layer - 1)].equations
                net = forward[j].value
                out = forward[size + j].value
                bias = file.biases[layer - 1]
                bias_name = file.names.biases[layer - 1]
                if bias.ndim:
                    bias, bias_name = bias[j], bias_name[j]
                label = (
                    f"{name}\nnet {_short(net)}\nout {_short(out)}\n"
                    f"{bias_name}={_short(bias)}"
                )
            axes.scatter(
                [x], [y], s=2600, color="#f4f1de", edgecolors="#3d405b", zorder=4
            )
            axes.text(x, y, label, fontsize=7, ha="center", va="center", zorder=5)

    title = f"{file.source}: E = {number_text(derivation.loss)}"
    if derivation.examples > 1:
        title += f" (node values of example 1 of {derivation.examples})"
    if not labelled:
        title += "; edge width and shade: |dE/dw|"
    axes.set_title(title, fontsize=10)
    figure.savefig(path, dpi=120)
    return path
