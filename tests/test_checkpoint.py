"""Checkpoints: round trips, retention, errors, a killed save and an exact resume."""

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
import pytest
import subprocess_runs

import jbp
from jbp.checkpoint import checkpoint_steps, restore_checkpoint, save_checkpoint

RUNS = pathlib.Path(__file__).with_name("subprocess_runs.py")

BIG_STEP = 16_777_217
"""2**24 + 1, the first int32 that float32 cannot hold (it rounds to 2**24)."""


def run_python(*args, timeout=120):
    completed = subprocess.run(
        [sys.executable, str(RUNS), *args],
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.splitlines()[-1])


def mixed_state():
    """Return a state with every kind of leaf a checkpoint must keep exactly."""
    network = jbp.Network(sizes=(2, 3, 1), activations=("tanh", "sigmoid"))
    params = jbp.init_params(network, jax.random.key(0))
    return {
        "params": params,
        "opt_state": subprocess_runs.OPTIMIZER.init(params),
        "key": jax.random.key(42),
        "rbg_key": jax.random.key(5, impl="rbg"),
        "step": jnp.int32(BIG_STEP),
        "epoch": 3,
        "learning_rate": 0.25,
        "finished": False,
        "losses": jnp.array([0.5, 0.25, 0.125], dtype=jnp.float32),
        "float64": jnp.array([1 / 3], dtype=jnp.float64),
        "bfloat16": jnp.array([1.5, -2.0], dtype=jnp.bfloat16),
        "mask": jnp.array([True, False]),
        "counts": np.array([0, 255], dtype=np.uint8),
        "scale": np.float32(0.1),
    }


def test_round_trip_keeps_structure_dtype_value(tmp_path, x64):
    state = mixed_state()
    save_checkpoint(tmp_path, 1, state)
    restored = restore_checkpoint(tmp_path, like=mixed_state())
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for (path, got), want in zip(
        jax.tree_util.tree_flatten_with_path(restored)[0],
        jax.tree.leaves(state),
        strict=True,
    ):
        where = jax.tree_util.keystr(path)
        assert type(got) is type(want), where
        if hasattr(want, "dtype"):
            assert got.dtype == want.dtype, where
        if jax.dtypes.issubdtype(getattr(want, "dtype", None), jax.dtypes.prng_key):
            got, want = jax.random.key_data(got), jax.random.key_data(want)
        np.testing.assert_array_equal(got, want, err_msg=where)


def test_round_trip_keeps_large_int32_step(tmp_path):
    # The value float32 would round: proves the step was not stored as a float.
    assert int(np.float32(BIG_STEP)) != BIG_STEP
    save_checkpoint(tmp_path, 1, {"step": jnp.int32(BIG_STEP)})
    restored = restore_checkpoint(tmp_path, like={"step": jnp.int32(0)})
    assert restored["step"].dtype == jnp.int32
    assert int(restored["step"]) == BIG_STEP


def test_round_trip_keeps_key_stream(tmp_path):
    key = jax.random.key(9)
    save_checkpoint(tmp_path, 1, {"key": key})
    restored = restore_checkpoint(tmp_path, like={"key": jax.random.key(0)})["key"]
    np.testing.assert_array_equal(
        jax.random.uniform(restored, (4,)), jax.random.uniform(key, (4,))
    )


def test_keeps_only_newest_checkpoints(tmp_path):
    for step in (10, 20, 30, 40, 50):
        save_checkpoint(tmp_path, step, {"step": jnp.int32(step)}, keep=2)
    assert checkpoint_steps(tmp_path) == [40, 50]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["40", "50"]


def test_restore_takes_shapes_from_checkpoint(tmp_path):
    history = {"losses": jnp.array([3.0, 2.0, 1.0]), "counts": np.arange(4)}
    save_checkpoint(tmp_path, 1, history)
    like = {"losses": jnp.zeros((0,)), "counts": np.zeros((0,), dtype=np.int64)}
    restored = restore_checkpoint(tmp_path, like=like)
    np.testing.assert_array_equal(restored["losses"], [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(restored["counts"], [0, 1, 2, 3])


def test_restores_latest_or_given_step(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"step": jnp.int32(step)})
    like = {"step": jnp.int32(0)}
    assert int(restore_checkpoint(tmp_path, like)["step"]) == 3
    assert int(restore_checkpoint(tmp_path, like, step=2)["step"]) == 2


def test_missing_directory_lists_nothing(tmp_path):
    assert checkpoint_steps(tmp_path / "absent") == []


def test_rejects_step_not_newer(tmp_path):
    save_checkpoint(tmp_path, 5, {"step": jnp.int32(5)})
    with pytest.raises(jbp.ValidationError, match="not newer"):
        save_checkpoint(tmp_path, 5, {"step": jnp.int32(5)})
    assert checkpoint_steps(tmp_path) == [5]


@pytest.mark.parametrize(
    ("keep", "step"),
    [(0, 1), (True, 1), (2.0, 1), (2, -1), (2, 1.5)],
    ids=["keep-zero", "keep-bool", "keep-float", "step-negative", "step-float"],
)
def test_save_rejects_bad_arguments(tmp_path, keep, step):
    with pytest.raises(jbp.ValidationError, match=r"keep|step"):
        save_checkpoint(tmp_path, step, {"step": jnp.int32(1)}, keep=keep)


def test_save_rejects_unsupported_leaf(tmp_path):
    with pytest.raises(jbp.ValidationError, match=r"\['name'\] is a str"):
        save_checkpoint(tmp_path, 1, {"name": "adam"})


def test_missing_orbax_names_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'jbp\[checkpoint\]'"):
        save_checkpoint(tmp_path, 1, {"step": jnp.int32(1)})


def test_restore_missing_directory_names_path(tmp_path):
    missing = tmp_path / "absent"
    with pytest.raises(jbp.ValidationError, match="absent is missing; check the path"):
        restore_checkpoint(missing, like={"step": jnp.int32(0)})


def test_restore_empty_directory_names_path(tmp_path):
    with pytest.raises(jbp.ValidationError, match="contains no complete checkpoint"):
        restore_checkpoint(tmp_path, like={"step": jnp.int32(0)})


def test_restore_absent_step_lists_steps(tmp_path):
    save_checkpoint(tmp_path, 1, {"step": jnp.int32(1)})
    with pytest.raises(
        jbp.ValidationError, match=r"no step 7; it contains steps \[1\]"
    ):
        restore_checkpoint(tmp_path, like={"step": jnp.int32(0)}, step=7)


@pytest.mark.parametrize(
    ("like", "match"),
    [
        ({"step": jnp.float32(0), "w": jnp.zeros(3)}, r"leaf \['step'\].*float32"),
        ({"step": jnp.int32(0), "w": np.zeros(3)}, r"leaf \['w'\].*'numpy'"),
        ({"step": jnp.int32(0)}, r"saved but not in the template: \[\"\['w'\]\"\]"),
        ({"step": 0, "w": jnp.zeros(3)}, r"leaf \['step'\].*'int'"),
    ],
    ids=["dtype", "numpy-array", "missing-leaf", "python-int"],
)
def test_restore_rejects_mismatched_template(tmp_path, like, match):
    save_checkpoint(tmp_path, 1, {"step": jnp.int32(1), "w": jnp.ones(3)})
    with pytest.raises(jbp.ValidationError, match=match):
        restore_checkpoint(tmp_path, like=like)


@pytest.mark.parametrize("damage", ["delete-data", "garble-layout"])
def test_restore_corrupt_checkpoint_names_fix(tmp_path, damage):
    state = {"step": jnp.int32(1), "w": jnp.arange(3.0)}
    save_checkpoint(tmp_path, 1, state)
    save_checkpoint(tmp_path, 2, dict(state, step=jnp.int32(2)))
    if damage == "delete-data":
        shutil.rmtree(tmp_path / "2" / "state")
    else:
        (tmp_path / "2" / "layout" / "metadata").write_text("{not json")
    with pytest.raises(jbp.ValidationError, match="corrupt") as error:
        restore_checkpoint(tmp_path, like=state)
    assert str(tmp_path / "2") in str(error.value)
    assert "delete that directory" in str(error.value)
    # Following the advice recovers the previous checkpoint.
    shutil.rmtree(tmp_path / "2")
    assert int(restore_checkpoint(tmp_path, like=state)["step"]) == 1


def test_killed_save_keeps_previous_checkpoint(tmp_path):
    child = subprocess.Popen(
        [sys.executable, str(RUNS), "slow-save", str(tmp_path)],
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        # Kill the child as soon as the second save's temporary directory exists.
        while not list(tmp_path.glob("2.*tmp*")):
            assert child.poll() is None, "the child exited before the second save"
            assert time.monotonic() < deadline, "the second save never started"
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()

    assert child.returncode == -signal.SIGKILL
    assert not (tmp_path / "2").exists(), "the save finished before the kill"
    assert checkpoint_steps(tmp_path) == [1]
    like = {"step": jnp.int32(0), "w": jnp.zeros(4)}
    restored = restore_checkpoint(tmp_path, like=like)
    assert int(restored["step"]) == 1
    np.testing.assert_array_equal(restored["w"], [0.0, 1.0, 2.0, 3.0])
    # The next save of the same step succeeds over the leftover.
    save_checkpoint(tmp_path, 2, {"step": jnp.int32(2), "w": jnp.ones(4)})
    assert checkpoint_steps(tmp_path) == [1, 2]


def test_resume_in_new_process_matches_straight_run(tmp_path):
    steps = 25
    x, t, params = subprocess_runs.make_data()
    network, optimizer = subprocess_runs.NETWORK, subprocess_runs.OPTIMIZER
    loss = subprocess_runs.LOSS
    first = jbp.train(network, params, x, t, optimizer, steps, loss=loss)
    state = subprocess_runs.initial_state(params)
    state.update(
        params=first.params,
        opt_state=first.opt_state,
        step=jnp.int32(steps),
        epoch=1,
        losses=first.losses,
    )
    save_checkpoint(tmp_path, steps, state)

    resumed = run_python("resume", str(tmp_path), str(steps))
    straight = jbp.train(network, params, x, t, optimizer, 2 * steps, loss=loss)

    assert not resumed["orbax_imported_before_use"]
    assert resumed["step"] == steps
    assert resumed["epoch"] == 1
    assert resumed["key_data"] == np.asarray(jax.random.key_data(state["key"])).tolist()
    np.testing.assert_array_equal(
        np.asarray(resumed["losses"], dtype=np.float32), straight.losses
    )
    for got, want in zip(
        resumed["params"], jax.tree.leaves(straight.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(got, dtype=np.float32), want)
