"""Smoke runs of every experiment script: a few steps, into a temporary folder."""

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

import jbp

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def load(name):
    """Import ``experiments/NAME.py`` as a module, with its folder on the path."""
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(
        f"experiment_{name}", EXPERIMENTS / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SMOKE = {
    "worked_example": (["--steps", "5", "--chunk-steps", "2"], ["loss.png"]),
    "xor": (["--epochs", "5", "--seeds", "1"], ["boundaries.png", "losses.png"]),
    "digits": (
        ["--epochs", "2", "--hidden", "8", "--chunk-epochs", "1"],
        ["curves.png"],
    ),
    "depth": (
        [
            "--depths",
            "2",
            "3",
            "--train-depth",
            "3",
            "--epochs",
            "2",
            "--measure-every",
            "1",
            "--width",
            "4",
            "--activations",
            "sigmoid",
        ],
        ["gradient_norms.png"],
    ),
}


@pytest.mark.parametrize("name", list(SMOKE))
def test_experiment_smoke_run(name, tmp_path, capsys):
    arguments, figures = SMOKE[name]
    status = load(name).main([*arguments, "--quiet", "--out", str(tmp_path)])
    assert status == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics
    if name in CHECKS:
        CHECKS[name](metrics)
    for figure in figures:
        assert (tmp_path / figure).stat().st_size > 0
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'metrics.json'}" in printed


def check_digits(metrics):
    labels = load_digits().target
    held_out = sum(round(0.2 * count) for count in np.bincount(labels))
    assert metrics["test_examples"] == held_out
    assert metrics["train_examples"] == len(labels) - held_out
    steps_per_epoch = -(-metrics["train_examples"] // 32)
    assert metrics["steps"] == 2 * steps_per_epoch
    assert metrics["final_test_accuracy"] == metrics["history"]["test_accuracy"][-1]


def check_xor(metrics):
    # With every weight equal, the hidden neurons stay identical.
    for entry in metrics["networks"].values():
        assert entry["zeros"]["successes"] == 0
        assert entry["zeros"]["max_hidden_weight_spread"] == 0.0
        assert entry["random"]["runs"] == 1


CHECKS = {"digits": check_digits, "xor": check_xor}


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("digits", ["--epochs", "0"], "argument --epochs: must be 1 or more, got 0"),
        ("xor", ["--learning-rate", "nan"], "must be a finite number > 0"),
        ("depth", ["--depths", "1"], "--depths and --train-depth must be at least 2"),
        ("digits", ["--batch-size", "5000"], "batch_size is 5000 but the data has"),
    ],
    ids=["epochs", "learning-rate", "depth", "batch-size"],
)
def test_bad_argument_exits_2_with_one_line(name, arguments, message, capsys):
    module = load(name)
    try:
        status = module.main([*arguments, "--quiet", "--out", "unused"])
    except SystemExit as exit:
        status = exit.code
    assert status == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.count("\n") == 1


def test_script_runs_from_command_line():
    completed = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "xor.py"), "--seeds", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("xor.py: error: argument --seeds")
    assert "Traceback" not in completed.stderr


def fake_result(epochs):
    state = jbp.TrainState(
        params=(),
        opt_state=(),
        key=np.zeros(2, np.uint32),
        epoch=np.int32(epochs),
        step=np.int32(5 * epochs),
        finite=np.bool_(True),
        nonfinite_step=np.int32(-1),
    )
    losses = np.linspace(1.0, 0.5, epochs)
    history = jbp.History(
        epoch=np.arange(1, epochs + 1),
        train_loss=losses,
        train_accuracy=losses,
        eval_loss=np.full(epochs, np.nan),
        eval_accuracy=np.full(epochs, np.nan),
        step_loss=np.repeat(losses, 5),
    )
    return jbp.FitResult(state, history)


def test_progress_logs_one_line_per_chunk(caplog):
    common = load("common")
    progress = common.Progress("run", 4, quiet=False)
    with caplog.at_level(logging.INFO, logger="experiments"):
        progress(fake_result(2))
        progress(fake_result(4))
    progress.close()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert lines[1].startswith("run epoch 4 step 20 loss=0.5 ")
    assert progress.bar.n == 4


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (KeyboardInterrupt(), 130),
        (jbp.ValidationError("x is wrong; fix it"), 2),
    ],
    ids=["ctrl-c", "validation"],
)
def test_run_maps_errors_to_exit_status(error, status, capsys):
    common = load("common")

    def experiment(args):
        raise error

    parser = common.make_parser("fake", "A fake experiment.")
    assert common.run(parser, experiment, ["--quiet"]) == status
    assert capsys.readouterr().err.count("\n") == 1


def test_run_reports_divergence(capsys):
    common = load("common")

    def experiment(args):
        raise jbp.DivergenceError(
            fake_result(1)._replace(
                state=fake_result(1).state._replace(
                    finite=np.bool_(False), nonfinite_step=np.int32(3)
                )
            )
        )

    parser = common.make_parser("fake", "A fake experiment.")
    assert common.run(parser, experiment, ["--quiet"]) == 1
    error = capsys.readouterr().err
    assert "training diverged: step 3" in error
    assert "Lower the learning rate" in error


def test_ctrl_c_waits_for_chunk_boundary():
    common = load("common")
    stop = common.StopRequest()
    with pytest.raises(KeyboardInterrupt):
        stop.handle(2, None)
    with stop.deferred():
        stop.handle(2, None)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            stop.check()
        with pytest.raises(KeyboardInterrupt):
            stop.handle(2, None)
    assert not stop.active


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--epochs", "-1"], "argument --epochs: must be 1 or more, got -1"),
        (["--out", ""], "argument --out: needs a folder path"),
    ],
    ids=["negative-epochs", "empty-out"],
)
def test_digits_rejects_before_training(arguments, message, capsys):
    digits = load("digits")
    with pytest.raises(SystemExit) as exit_info:
        digits.common.run(digits.build_parser(), digits.experiment, arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_out_inside_a_file_is_rejected(tmp_path, capsys):
    digits = load("digits")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        digits.common.run(
            digits.build_parser(), digits.experiment, ["--out", str(blocker / "sub")]
        )
    assert exit_info.value.code == 2
    assert "is a file, so" in capsys.readouterr().err
