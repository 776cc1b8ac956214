"""Data-parallel fit, and checkpoints and resume through the experiment scripts."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jbp
from jbp.sharding import data_mesh

TESTS = pathlib.Path(__file__).resolve().parent
RUNS = TESTS / "subprocess_runs.py"
DIGITS = TESTS.parent / "experiments" / "digits.py"
EIGHT_DEVICES = dict(
    os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", PYTHONHASHSEED="0"
)


@pytest.fixture(scope="module")
def digits():
    """The digits experiment, imported as a module."""
    from test_experiments import load

    return load("digits")


def restore_run(digits, arguments, directory):
    """Restore the latest checkpoint of a digits run into its own template."""
    args = digits.build_parser().parse_args(arguments)
    state = digits.build_run(args).state
    history = jbp.History(
        np.zeros((0,), np.int32),
        *(np.zeros((0,), np.float32) for _ in jbp.History._fields[1:]),
    )
    like = {"state": state, "history": history}
    return jbp.restore_checkpoint(directory, like=like)


def assert_same_bits(left, right):
    for a, b in zip(jax.tree.leaves(left), jax.tree.leaves(right), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fit_on_eight_devices_matches_one_device():
    # Splitting a batch over 8 devices changes only the order in which XLA sums
    # the per-example gradients, so the results differ by rounding: the float64
    # run must agree to 1e-12 (measured 4e-16). float32 rounding (eps 6e-8) over
    # 24 Adam steps stays well within 1e-5 (measured 2e-7).
    completed = subprocess.run(
        [sys.executable, str(RUNS), "fit-eight-devices"],
        env=EIGHT_DEVICES,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["devices"] == 8
    assert report["params_devices"] == 8
    assert report["state_replicated"]
    # 64 examples in batches of 12 give 6 steps an epoch, over 4 epochs.
    assert report["steps"] == [24, 24]
    assert report["float64_difference"] < 1e-12
    assert report["float32_difference"] < 1e-5


def test_fit_on_one_device_mesh_equals_no_mesh():
    network = jbp.Network((3, 4, 2), ("tanh", "softmax"))
    x = jax.random.normal(jax.random.key(0), (10, 3))
    t = jnp.arange(10) % 2
    optimizer = optax.sgd(0.1)
    state = jbp.init_state(
        network, optimizer, jbp.init_params(network, jax.random.key(1)), 2
    )
    options = dict(batch_size=4, loss="cross_entropy")
    plain = jbp.fit(network, state, x, t, optimizer, 3, **options)
    meshed = jbp.fit(network, state, x, t, optimizer, 3, mesh=data_mesh(1), **options)
    assert_same_bits(plain.state, meshed.state)
    assert_same_bits(tuple(plain.history), tuple(meshed.history))


def test_fit_rejects_a_mesh_without_data_axis():
    network = jbp.Network((2, 1), ("sigmoid",))
    optimizer = optax.sgd(0.1)
    state = jbp.init_state(
        network, optimizer, jbp.init_params(network, jax.random.key(0)), 0
    )
    mesh = jax.make_mesh((1,), ("model",))
    with pytest.raises(
        jbp.ValidationError, match=r"one-axis jax\.sharding\.Mesh named"
    ):
        jbp.fit(
            network, state, [[0.0, 1.0]], [[1.0]], optimizer, 1, batch_size=1, mesh=mesh
        )


SMALL = ["--hidden", "32", "--epochs", "3", "--chunk-epochs", "3", "--quiet"]


def test_digits_on_eight_devices_matches_one_device(digits, tmp_path):
    eight = tmp_path / "eight"
    completed = subprocess.run(
        [sys.executable, str(DIGITS), *SMALL, "--devices", "8", "--out", str(eight)],
        env=EIGHT_DEVICES,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    one = tmp_path / "one"
    assert digits.main([*SMALL, "--out", str(one)]) == 0
    eight = json.loads((eight / "metrics.json").read_text())
    one = json.loads((one / "metrics.json").read_text())
    assert (eight["devices"], one["devices"]) == (8, 1)
    assert eight["steps"] == one["steps"] == 3 * 45
    # The runs differ only by float32 rounding in the gradient sums (see the fit
    # test above). One image whose two best logits nearly tie could flip, so the
    # accuracies may differ by one held-out image at most.
    tolerance = 1 / eight["test_examples"] + 1e-9
    np.testing.assert_allclose(
        eight["history"]["test_accuracy"],
        one["history"]["test_accuracy"],
        atol=tolerance,
    )
    np.testing.assert_allclose(
        eight["history"]["train_loss"], one["history"]["train_loss"], rtol=1e-4
    )
    np.testing.assert_allclose(
        eight["history"]["test_loss"], one["history"]["test_loss"], rtol=1e-4
    )


def wait_for_checkpoint(directory, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir()):
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended first: {process.communicate()}")
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint appeared in {directory}")


def test_interrupted_run_resumes_to_the_same_parameters(digits, tmp_path):
    run = ["--hidden", "32", "--epochs", "20", "--quiet"]
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        [
            sys.executable,
            str(DIGITS),
            *run,
            "--chunk-epochs",
            "1",
            "--checkpoint-dir",
            str(interrupted),
            "--out",
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_checkpoint(interrupted, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("digits.py: interrupted; saved the state after epoch ")
    saved = pathlib.Path(lines[0].split(" in ", 1)[1].split(";", 1)[0])
    assert saved.parent == interrupted
    assert saved.is_dir()
    steps = jbp.checkpoint_steps(interrupted)
    assert steps[-1] == int(saved.name) < 20 * 45

    resumed_out, straight_out = tmp_path / "resumed", tmp_path / "straight"
    resume = ["--checkpoint-dir", str(interrupted), "--resume", "--chunk-epochs", "20"]
    assert digits.main([*run, *resume, "--out", str(resumed_out)]) == 0
    straight = tmp_path / "straight_checkpoints"
    options = ["--checkpoint-dir", str(straight), "--chunk-epochs", "20"]
    assert digits.main([*run, *options, "--out", str(straight_out)]) == 0
    resumed_state = restore_run(digits, run, interrupted)
    straight_state = restore_run(digits, run, straight)
    assert int(resumed_state["state"].step) == 20 * 45
    assert_same_bits(resumed_state, straight_state)
    resumed_metrics = json.loads((resumed_out / "metrics.json").read_text())
    straight_metrics = json.loads((straight_out / "metrics.json").read_text())
    assert resumed_metrics["history"] == straight_metrics["history"]


CONSTANT = ["--hidden", "16", "--schedule", "constant", "--quiet"]


@pytest.fixture(scope="module")
def two_epochs(digits, tmp_path_factory):
    """A constant-rate digits run of 2 epochs, checkpointed after each."""
    directory = tmp_path_factory.mktemp("two_epochs") / "checkpoints"
    out = directory.parent / "out"
    arguments = [*CONSTANT, "--epochs", "2", "--chunk-epochs", "1"]
    assert (
        digits.main([*arguments, "--checkpoint-dir", str(directory), "--out", str(out)])
        == 0
    )
    return directory


def test_resume_n_plus_n_equals_2n(digits, two_epochs, tmp_path):
    # Resume a copy, so that the module's other tests still see 2 epochs.
    directory = tmp_path / "resumed"
    shutil.copytree(two_epochs, directory)
    four = [*CONSTANT, "--epochs", "4", "--chunk-epochs", "1"]
    out = str(tmp_path / "out")
    assert (
        digits.main(
            [*four, "--checkpoint-dir", str(directory), "--resume", "--out", out]
        )
        == 0
    )
    straight = tmp_path / "straight"
    assert digits.main([*four, "--checkpoint-dir", str(straight), "--out", out]) == 0
    resumed = restore_run(digits, four, directory)
    assert int(resumed["state"].epoch) == 4
    assert list(resumed["history"].epoch) == [1, 2, 3, 4]
    assert_same_bits(resumed, restore_run(digits, four, straight))
    # keep=3 by default: of the checkpoints after epochs 1 to 4, the first is gone.
    assert jbp.checkpoint_steps(directory) == [2 * 45, 3 * 45, 4 * 45]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--resume"], "--resume needs --checkpoint-dir DIR"),
        (
            ["--resume", "--checkpoint-dir", "{missing}"],
            "does not exist, so there is no",
        ),
        (["--resume", "--checkpoint-dir", "{empty}"], "is empty, so there is no run"),
        (["--epochs", "2", "--checkpoint-dir", "{saved}"], "already contains the"),
        (
            [
                "--epochs",
                "2",
                "--learning-rate",
                "0.5",
                "--resume",
                "--checkpoint-dir",
                "{saved}",
            ],
            "has learning_rate=0.001, but these options give learning_rate=0.5",
        ),
        (["--devices", "2"], "--devices 2 asks for more devices than the 1"),
    ],
    ids=["no-dir", "missing", "empty", "not-resumed", "changed", "devices"],
)
def test_bad_combinations_exit_2_with_one_line(
    digits, two_epochs, tmp_path, capsys, arguments, message
):
    (tmp_path / "empty").mkdir()
    places = {
        "missing": tmp_path / "missing",
        "empty": tmp_path / "empty",
        "saved": two_epochs,
    }
    arguments = [argument.format(**places) for argument in arguments]
    try:
        status = digits.main([*CONSTANT, *arguments, "--out", str(tmp_path / "out")])
    except SystemExit as exit:
        status = exit.code
    assert status == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.count("\n") == 1
    assert error.startswith("digits.py: error: ")


def test_divergence_saves_the_last_finite_state(digits, tmp_path, capsys):
    out = tmp_path / "out"
    arguments = [*CONSTANT, "--epochs", "2", "--learning-rate", "1e38"]
    assert digits.main([*arguments, "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "training diverged: step " in error
    saved = pathlib.Path(error.split("the last finite state is saved in ")[1].strip())
    assert saved.parent == out / "checkpoints"
    restored = restore_run(digits, arguments, saved.parent)
    state = restored["state"]
    assert not bool(state.finite)
    assert int(saved.name) == int(state.step) == int(state.nonfinite_step)
    for leaf in jax.tree.leaves(state.params):
        assert np.all(np.isfinite(np.asarray(leaf)))
