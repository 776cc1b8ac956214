"""``jbp explain``: the derivation's numbers, its equations and its three formats."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from explain_support import evaluate, network_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from matplotlib.mathtext import MathTextParser
from mdit_py_plugins.dollarmath import dollarmath_plugin

import jbp
from jbp.cli import main
from jbp.derivation import CHAIN_RULE_LIMIT, Partial, Symbol, derive
from jbp.render import render

ROOT = Path(__file__).resolve().parents[1]
TANH_SOFTMAX = ROOT / "experiments" / "networks" / "tanh_softmax.json"


def _values(derivation):
    """Map each equation's left-hand side to its value."""
    table = {}
    for section in derivation.sections:
        for equation in section.equations:
            table[equation.lhs[:-1]] = equation.value
    return table


E = Symbol("E")
OUT_O1, NET_O1 = Symbol("out", "o1"), Symbol("net", "o1")
OUT_H1, NET_H1 = Symbol("out", "h1"), Symbol("net", "h1")

# Figures printed by the worked example (the source is named in
# jbp/worked_example.py), each with the unit of its last printed digit. The
# published -0.019049119 was rounded from rounded factors and lies 0.74 units from
# the float64 value, so every figure is held to one unit of its last digit.
PUBLISHED = [
    ((E, OUT_O1), 0.74136507, 1e-8),
    ((OUT_O1, NET_O1), 0.186815602, 1e-9),
    ((NET_O1, Symbol("w", "w5")), 0.593269992, 1e-9),
    ((E, Symbol("w", "w5")), 0.082167041, 1e-9),
    ((Symbol("E_term", "o1"), OUT_H1), 0.055399425, 1e-9),
    ((Symbol("E_term", "o2"), OUT_H1), -0.019049119, 1e-9),
    ((E, OUT_H1), 0.036350306, 1e-9),
    ((OUT_H1, NET_H1), 0.241300709, 1e-9),
    ((E, Symbol("w", "w1")), 0.000438568, 1e-9),
    ((Symbol("E_term", "o1"),), 0.274811083, 1e-9),
    ((Symbol("E_term", "o2"),), 0.023560026, 1e-9),
    ((E,), 0.298371109, 1e-9),
    ((Symbol("w", "w5", updated=True),), 0.35891648, 1e-8),
    ((Symbol("w", "w1", updated=True),), 0.149780716, 1e-9),
]


@pytest.fixture(scope="module")
def worked():
    return derive(jbp.read_network_file())


@pytest.mark.parametrize(
    ("key", "published", "unit"),
    PUBLISHED,
    ids=[f"{'/'.join(s.kind + s.name for s in key)}" for key, _, _ in PUBLISHED],
)
def test_published_factors(worked, key, published, unit):
    assert _values(worked)[key] == pytest.approx(published, abs=unit)


def test_printed_lines_match_published(worked):
    text = render(worked, "text")
    w5 = next(line for line in text.splitlines() if line.startswith("dE/dw5 ="))
    assert w5.startswith(
        "dE/dw5 = dE/dout_o1 * dout_o1/dnet_o1 * dnet_o1/dw5 = "
        "0.74136507 * 0.186815602 * 0.593269992 = "
    )
    assert float(w5.rsplit("=", 1)[1]) == pytest.approx(0.082167041, abs=1e-9)
    h1 = next(line for line in text.splitlines() if line.startswith("dE/dout_h1 ="))
    numbers = [float(n) for n in re.findall(r"-?\d+\.\d+", h1.split("=", 2)[2])]
    assert numbers == pytest.approx([0.055399425, -0.019049119, 0.036350306], abs=1e-9)
    assert "dE_o1/dout_h1 + dE_o2/dout_h1" in h1
    assert "+ (-0.0190491183)" in h1


def test_update_matches_sgd_step(worked, x64):
    file = worked.file
    result = jbp.train(
        file.network, file.params(), file.x, file.t, optax.sgd(0.5), steps=1
    )
    for layer, (w_new, b_new) in enumerate(worked.updated):
        np.testing.assert_allclose(w_new, result.params[layer].w, rtol=1e-12)
        np.testing.assert_allclose(b_new, result.params[layer].b, rtol=1e-12)


def _check_derivation(derivation):
    """Every equation's rhs reproduces its value; every gradient is jax.grad's."""
    for section in derivation.sections:
        for equation in section.equations:
            if equation.rhs is None:
                continue
            value = evaluate(equation.rhs)
            assert value == pytest.approx(equation.value, rel=1e-9, abs=1e-12), equation
    file = derivation.file
    with jax.enable_x64(True):
        x, t = jnp.asarray(file.x), jnp.asarray(file.t)
        exact = jbp.autodiff_grad(file.network, file.params(), x, t, file.loss)
    gradients = {}
    for section in derivation.sections:
        for equation in section.equations:
            lhs = equation.lhs
            if isinstance(lhs, Partial) and lhs.of == E and lhs.wrt.kind in "wb":
                gradients[lhs.wrt.name] = equation.value
    for layer in derivation.layers:
        for neuron in layer.parameters:
            for row in neuron.rows:
                gradients[row.name] = row.gradient
        if layer.shared_bias is not None:
            gradients[layer.shared_bias.name] = layer.shared_bias.gradient
    names = file.names
    for layer, grads in enumerate(exact):
        for j, row in enumerate(names.weights[layer]):
            for k, name in enumerate(row):
                assert gradients[name] == pytest.approx(
                    float(grads.w[j, k]), rel=1e-9, abs=1e-14
                )
        bias = names.biases[layer]
        for j, name in enumerate([bias] if isinstance(bias, str) else bias):
            expected = grads.b if isinstance(bias, str) else grads.b[j]
            assert gradients[name] == pytest.approx(
                float(expected), rel=1e-9, abs=1e-14
            )
    assert len(gradients) == sum(
        w.size + b.size for w, b in zip(file.weights, file.biases, strict=True)
    )


@pytest.mark.parametrize("form", ["chain", "delta"])
def test_worked_example_equations_hold(form):
    _check_derivation(derive(jbp.read_network_file(), form))


@pytest.mark.parametrize("form", ["auto", "delta"])
def test_tanh_softmax_equations_hold(form):
    _check_derivation(derive(jbp.read_network_file(TANH_SOFTMAX), form))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=network_files(), form=st.sampled_from(["chain", "delta"]))
def test_random_networks_match_jax_grad(data, form):
    _check_derivation(derive(jbp.parse_network(data), form))


def test_auto_form_follows_limit():
    small = jbp.read_network_file()
    assert derive(small).form == "chain"
    data = json.loads(TANH_SOFTMAX.read_text())
    data["x"] = [data["x"]] * 2
    data["t"] = [data["t"]] * 2
    large = jbp.parse_network(data)
    assert CHAIN_RULE_LIMIT < 46 * 2
    assert derive(large).form == "delta"


def test_softmax_half_sse_uses_jacobian():
    data = json.loads(TANH_SOFTMAX.read_text())
    data["loss"] = "half_sse"
    derivation = derive(jbp.parse_network(data), "chain")
    off_diagonal = [
        eq
        for s in derivation.sections
        for eq in s.equations
        if isinstance(eq.lhs, Partial)
        and eq.lhs.of == Symbol("out", "o2")
        and eq.lhs.wrt == Symbol("net", "o1")
    ]
    assert len(off_diagonal) == 1
    with jax.enable_x64(True):
        values = _values(derivation)
        net = jnp.asarray([values[(Symbol("net", n),)] for n in ("o1", "o2")])
        jacobian = jax.jacobian(jax.nn.softmax)(net)
    assert off_diagonal[0].value == pytest.approx(float(jacobian[1, 0]), rel=1e-12)
    assert off_diagonal[0].value < 0
    _check_derivation(derivation)


def test_batch_averages_examples():
    data = json.loads(
        jbp.netfile.resources.files("jbp")
        .joinpath("networks", "worked_example.json")
        .read_text()
    )
    data["x"] = [[0.05, 0.10], [0.2, -0.3]]
    data["t"] = [[0.01, 0.99], [0.5, 0.5]]
    derivation = derive(jbp.parse_network(data), "chain")
    mean = [s for s in derivation.sections if s.kind == "mean"]
    assert len(mean) == 1
    w5 = next(eq for eq in mean[0].equations if eq.lhs.wrt.name == "w5")
    assert w5.rhs.op == "mean"
    assert [term.of.example for term in w5.rhs.args] == [1, 2]
    _check_derivation(derivation)
    text = render(derivation)
    assert "mean of the per-example errors" in text
    assert "dE/dw5 = (dE^(1)/dw5 + dE^(2)/dw5) / 2 = " in text


# Formats ------------------------------------------------------------------------

PARSER = MathTextParser("path")


def _parse_maths(expression):
    PARSER.parse(f"${expression}$")


# Parsing every expression with mathtext is slow, so each format takes its share:
# Markdown the worked example in both forms, LaTeX the larger network.
@pytest.mark.parametrize(
    ("path", "form"),
    [(None, "chain"), (None, "delta"), (TANH_SOFTMAX, "delta")],
    ids=["worked-chain", "worked-delta", "tanh-softmax-delta"],
)
def test_markdown_maths_parses(path, form):
    text = render(derive(jbp.read_network_file(path), form), "markdown")
    tokens = MarkdownIt("commonmark").enable("table").use(dollarmath_plugin).parse(text)
    maths = []
    for token in tokens:
        if token.type == "math_block":
            maths.append(token.content)
        for child in token.children or []:
            if child.type == "math_inline":
                maths.append(child.content)
    assert len(maths) > 10
    for expression in maths:
        _parse_maths(expression.strip())
    if form == "delta":
        assert any(token.type == "table_open" for token in tokens)


def _environments_balance(text):
    stack = []
    for match in re.finditer(r"\\(begin|end)\{([^}]*)\}", text):
        kind, name = match.groups()
        if kind == "begin":
            stack.append(name)
        else:
            assert stack and stack.pop() == name, f"unbalanced \\end{{{name}}}"
    assert stack == []
    depth = 0
    for char in re.sub(r"\\[{}]", "", text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0


@pytest.mark.parametrize(
    ("path", "form"),
    [(None, "chain"), (TANH_SOFTMAX, "delta")],
    ids=["worked-chain", "tanh-softmax-delta"],
)
def test_latex_document_parses(path, form, tmp_path):
    _check_latex(render(derive(jbp.read_network_file(path), form), "latex"), tmp_path)


# Small networks with every activation and loss, so that every kind of equation
# is parsed without paying for the long derivations of larger networks.
VARIANTS = [
    ("tanh", "softmax", "cross_entropy", [0, 1]),
    ("relu", "identity", "cross_entropy", 1),
    ("gelu", "softmax", "half_sse", [0.2, 0.8]),
    ("identity", "tanh", "mse", [0.1, -0.3]),
    ("sigmoid", "sigmoid", "binary_cross_entropy", [1.0, 0.0]),
    ("tanh", "identity", "binary_cross_entropy", [0.3, 0.9]),
]


@pytest.mark.parametrize(
    ("hidden", "output", "loss", "t"),
    VARIANTS,
    ids=[v[2] + "-" + v[1] for v in VARIANTS],
)
def test_every_equation_kind_parses(hidden, output, loss, t, tmp_path):
    data = {
        "layers": [
            {"activation": hidden, "weights": [[0.5], [-0.25]], "bias": [0.1, -1e-7]},
            {"activation": output, "weights": [[0.3, -0.2], [0.7, 0.4]], "bias": 0.2},
        ],
        "x": [[1.5], [-2.0]] if loss == "mse" else [1.5],
        "t": [t, t] if loss == "mse" else t,
        "loss": loss,
    }
    derivation = derive(jbp.parse_network(data), "chain")
    _check_derivation(derivation)
    _check_latex(render(derivation, "latex"), tmp_path)
    markdown = render(derivation, "markdown")
    assert markdown.count("$$") % 2 == 0


def _check_latex(text, tmp_path):
    assert text.startswith("\\documentclass")
    assert text.rstrip().endswith("\\end{document}")
    _environments_balance(text)
    assert not re.search(r"&=\s*$", text, re.MULTILINE), "equation with no right side"
    bodies = re.findall(r"\\begin\{align\*\}\n(.*?)\n\\end\{align\*\}", text, re.S)
    assert len(bodies) > 5
    # Each distinct left side, symbolic side and number format is parsed once:
    # numeric sides differ from the symbolic ones only in their leaves.
    parts = set()
    for body in bodies:
        body = re.sub(r"&&\s*\\text\{.*\}$", "", body)
        sides = [side.strip() for side in re.split(r"&=|\\\\", body)]
        parts.update(side for side in sides[:2] if side)
        parts.update(side for side in sides[2:] if "\\times" in side)
    for part in parts:
        _parse_maths(part)
    if shutil.which("pdflatex"):
        source = tmp_path / "explain.tex"
        source.write_text(text)
        process = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", source.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert process.returncode == 0, process.stdout[-2000:]


# Command line -------------------------------------------------------------------


def test_explain_default_prints_derivation(capsys):
    assert main(["explain"]) == 0
    out = capsys.readouterr().out
    assert "dE/dw1 = dE/dout_h1 * dout_h1/dnet_h1 * dnet_h1/dw1" in out
    assert "b1+ = b1 = 0.35   (not trained)" in out


def test_explain_tanh_softmax_file(capsys):
    assert main(["explain", str(TANH_SOFTMAX)]) == 0
    out = capsys.readouterr().out
    assert "dE/dnet_o1 = p_o1 - t_o1" not in out
    assert "dE/dnet_o1 = out_o1 - t_o1 = " in out
    assert "Network 3-4-4-2 (tanh, tanh, softmax), loss cross_entropy" in out


def test_explain_writes_output_and_plot(tmp_path, capsys):
    output, plot = tmp_path / "w.md", tmp_path / "w.png"
    arguments = ["explain", "--format", "markdown", "--output", str(output)]
    assert main([*arguments, "--plot", str(plot)]) == 0
    assert output.read_text().startswith("# Backpropagation, step by step")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    err = capsys.readouterr().err
    assert f"wrote {output}" in err
    assert f"wrote {plot}" in err


def test_plot_without_matplotlib_fails_cleanly(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["explain", "--plot", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install 'jbp[experiments]'" in err[0]


def test_plot_unknown_format_fails(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "--plot", str(tmp_path / "p.docx")])
    assert exit_info.value.code == 2
    assert "needs one of the suffixes .png, .svg, .pdf" in capsys.readouterr().err


def test_bad_plot_path_writes_nothing(tmp_path, capsys):
    output = tmp_path / "derivation.txt"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "explain",
                "--output",
                str(output),
                "--plot",
                str(tmp_path / "no" / "p.png"),
            ]
        )
    assert exit_info.value.code == 2
    assert not output.exists()
    assert "does not exist; create it first" in capsys.readouterr().err


def test_printed_numbers_have_nine_digits(worked):
    text = render(worked, "text")
    for number in re.findall(r"\d+\.\d+(?:e-?\d+)?", text):
        digits = number.split("e")[0].replace(".", "").lstrip("0")
        assert len(digits) <= 9, number
    assert math.isclose(worked.loss, 0.298371108760, rel_tol=1e-11)
