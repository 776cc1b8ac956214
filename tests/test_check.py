"""``jbp check``: three gradients that agree, a verdict that can fail, clean errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from explain_support import network_files
from hypothesis import HealthCheck, given, settings

import jbp
from jbp import gradcheck
from jbp.cli import main
from jbp.gradcheck import check_gradients

ROOT = Path(__file__).resolve().parents[1]
TANH_SOFTMAX = ROOT / "experiments" / "networks" / "tanh_softmax.json"


@pytest.mark.parametrize("path", [None, TANH_SOFTMAX], ids=["worked", "tanh-softmax"])
def test_check_agrees_and_exits_0(path, capsys):
    arguments = ["check"] if path is None else ["check", str(path)]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "DISAGREE" not in out
    assert "verdict: the chain rule, jax.grad and finite differences agree" in out


def test_json_has_every_gradient_in_file_layout(capsys):
    assert main(["check", str(TANH_SOFTMAX), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    file = jbp.read_network_file(TANH_SOFTMAX)
    assert report["agree"] is True
    assert len(report["layers"]) == 3
    for layer, entry in enumerate(report["layers"]):
        for method in ("chain_rule", "jax_grad", "finite_differences"):
            weights = np.asarray(entry[method]["weights"])
            assert weights.shape == file.weights[layer].shape
            assert np.asarray(entry[method]["bias"]).shape == file.biases[layer].shape
        assert len(entry["comparisons"]) == 3
    first = report["layers"][0]
    np.testing.assert_allclose(
        first["finite_differences"]["weights"], first["jax_grad"]["weights"], rtol=1e-6
    )


def test_broken_chain_rule_exits_1(monkeypatch, capsys):
    compute = gradcheck._all_gradients

    def skewed(*args):
        loss, chain, *rest = compute(*args)
        chain = (chain[0]._replace(w=chain[0].w * 1.001), *chain[1:])
        return (loss, chain, *rest)

    monkeypatch.setattr(gradcheck, "_all_gradients", skewed)
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "1 (h1, h2)  chain_rule vs jax_grad" in out
    assert "DISAGREE" in out


def test_saturated_units_pass_on_absolute_tolerance():
    data = json.loads(TANH_SOFTMAX.read_text())
    data["layers"][0]["weights"] = [[40.0, -30.0, 25.0]] * 4
    result = check_gradients(jbp.parse_network(data))
    assert result.agree
    first = result.gradients["jax_grad"][0][0]
    assert np.abs(first).max() < 1e-20
    fd_rows = [
        c
        for c in result.comparisons
        if c.layer == 0 and "finite_differences" in c.methods
    ]
    assert all(c.max_rel > 1e-3 or c.max_abs == 0 for c in fd_rows)


def test_finite_differences_match_jax_grad_on_worked_example():
    result = check_gradients(jbp.read_network_file())
    fd = result.gradients["finite_differences"]
    exact = result.gradients["jax_grad"]
    assert result.loss == pytest.approx(0.298371108760, rel=1e-11)
    for (fd_w, fd_b), (w, b) in zip(fd, exact, strict=True):
        np.testing.assert_allclose(fd_w, w, rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(fd_b, b, rtol=1e-6, atol=1e-10)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=network_files(hidden=("sigmoid", "tanh", "gelu", "identity")))
def test_random_networks_agree(data):
    # ReLU is left out: at net = 0 it has no derivative, and finite differences
    # across the kink rightly disagree with jax.grad.
    result = check_gradients(jbp.parse_network(data))
    assert result.agree, result.comparisons


BAD_INPUTS = {
    "missing-file": (None, "not found"),
    "invalid-json": ('{\n  "layers": [,]\n}', "invalid JSON at line 2, column 14"),
    "weight-shape": (
        {"layers[1].weights": [[0.4, 0.45, 0.1], [0.5, 0.55, 0.2]]},
        "layers[1].weights has shape (2, 3); expected (2, 2)",
    ),
    "unknown-activation": (
        {"layers[0].activation": "swish"},
        'unknown activation "swish"; expected one of: sigmoid, tanh',
    ),
    "unknown-loss": ({"loss": "hinge"}, "expected one of: half_sse, mse"),
    "non-finite": ({"x": "[0.05, Infinity]"}, "x[1] is Infinity; every number"),
    "targets": ({"t": [0.01, 0.99, 0.5]}, "output layer has 2 neurons; give 2"),
}


def _write_bad(tmp_path, content):
    path = tmp_path / "net.json"
    if content is None:
        return tmp_path / "absent.json"
    if isinstance(content, str):
        path.write_text(content)
        return path
    text = (ROOT / "jbp" / "networks" / "worked_example.json").read_text()
    data = json.loads(text)
    for key, value in content.items():
        if key.startswith("layers["):
            index, field = int(key[7]), key.split(".")[1]
            data["layers"][index][field] = value
        else:
            data[key] = value
    text = json.dumps(data).replace('"[0.05, Infinity]"', "[0.05, Infinity]")
    path.write_text(text)
    return path


# Each bad input runs once in a subprocess (no traceback may escape the process),
# alternating between the commands, and through main() for both commands.
SUBPROCESS_CASES = [
    (case, ("explain", "check")[i % 2]) for i, case in enumerate(BAD_INPUTS)
]


@pytest.mark.parametrize(
    ("case", "command"), SUBPROCESS_CASES, ids=[f"{c}-{m}" for c, m in SUBPROCESS_CASES]
)
def test_bad_input_subprocess_exit_2(case, command, tmp_path):
    content, message = BAD_INPUTS[case]
    path = _write_bad(tmp_path, content)
    process = subprocess.run(
        [sys.executable, "-m", "jbp", command, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 2
    assert process.stdout == ""
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr
    assert lines[0].startswith(f"jbp {command}: error: ")
    assert message in lines[0]


@pytest.mark.parametrize("command", ["explain", "check"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_main_exit_2(case, command, tmp_path, capsys):
    content, message = BAD_INPUTS[case]
    path = _write_bad(tmp_path, content)
    assert main([command, str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]


def test_invalid_toml_gives_line(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text("x = [0.05, 0.1]\nloss = half_sse\n")
    with pytest.raises(jbp.ValidationError, match=r"invalid TOML: .*line 2, column 8"):
        jbp.read_network_file(path)
