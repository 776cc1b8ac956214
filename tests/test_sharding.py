"""Data parallelism: one device in this process, eight in a fresh one."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jbp
from jbp.sharding import (
    DATA_AXIS,
    data_mesh,
    masked_loss_value,
    pad_batch,
    replicate,
    shard_batch,
)

RUNS = pathlib.Path(__file__).with_name("subprocess_runs.py")

NETWORK = jbp.Network(sizes=(3, 5, 2), activations=("tanh", "sigmoid"))


def make_batch(examples, dtype=jnp.float32):
    x_key, t_key, params_key = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(x_key, (examples, 3), dtype=dtype)
    t = jax.random.uniform(t_key, (examples, 2), dtype=dtype)
    return x, t, jbp.init_params(NETWORK, params_key, dtype=dtype)


def test_data_mesh_spans_every_device():
    mesh = data_mesh()
    assert mesh.axis_names == (DATA_AXIS,)
    assert mesh.size == jax.device_count()


@pytest.mark.parametrize(
    "num_devices",
    [0, -1, 10_000, True, 1.0],
    ids=["zero", "negative", "too-many", "bool", "float"],
)
def test_data_mesh_rejects_bad_count(num_devices):
    with pytest.raises(jbp.ValidationError, match="num_devices"):
        data_mesh(num_devices)


def test_pad_batch_pads_zero_rows_and_masks_them():
    x = jnp.arange(10.0).reshape(5, 2) + 1
    labels = jnp.array([1, 2, 3, 4, 5])
    (padded_x, padded_labels), mask = pad_batch((x, labels), 4)
    assert padded_x.shape == (8, 2)
    assert padded_labels.shape == (8,)
    np.testing.assert_array_equal(padded_x[:5], x)
    np.testing.assert_array_equal(padded_x[5:], np.zeros((3, 2)))
    np.testing.assert_array_equal(padded_labels[5:], [0, 0, 0])
    np.testing.assert_array_equal(mask, [True] * 5 + [False] * 3)


def test_pad_batch_extends_existing_mask():
    (x,), mask = pad_batch((jnp.ones((3, 2)),), 4, mask=jnp.array([True, True, False]))
    assert x.shape == (4, 2)
    np.testing.assert_array_equal(mask, [True, True, False, False])


def test_pad_batch_leaves_multiple_unchanged():
    (x,), mask = pad_batch((jnp.ones((8, 2)),), 4)
    assert x.shape == (8, 2)
    assert bool(mask.all())


@pytest.mark.parametrize(
    ("batch", "multiple", "mask", "match"),
    [
        ((jnp.ones((3, 2)),), 0, None, "multiple"),
        ((jnp.ones((3, 2)),), 2.0, None, "multiple"),
        ((jnp.ones((3, 2)), jnp.ones((4,))), 2, None, "same number of examples"),
        ((jnp.ones((3, 2)),), 2, jnp.ones((4,), bool), "mask"),
        ((jnp.ones((3, 2)),), 2, jnp.ones((3,)), "mask"),
        ((), 2, None, "no arrays"),
    ],
    ids=["zero", "float", "ragged", "mask-shape", "mask-dtype", "empty"],
)
def test_pad_batch_rejects_bad_input(batch, multiple, mask, match):
    with pytest.raises(jbp.ValidationError, match=match):
        pad_batch(batch, multiple, mask=mask)


def test_one_device_train_matches_plain_arrays():
    # A one-device mesh takes the same calls as eight and must change nothing.
    mesh = data_mesh(1)
    x, t, params = make_batch(16)
    optimizer = optax.adam(0.05)
    plain = jbp.train(NETWORK, params, x, t, optimizer, 10)
    x_sharded, t_sharded = shard_batch(mesh, (x, t))
    placed = jbp.train(
        NETWORK,
        replicate(mesh, params),
        x_sharded,
        t_sharded,
        optimizer,
        10,
        opt_state=replicate(mesh, jbp.init_opt_state(NETWORK, optimizer, params)),
    )
    assert x_sharded.sharding.spec == jax.sharding.PartitionSpec(DATA_AXIS)
    for got, want in zip(jax.tree.leaves(placed), jax.tree.leaves(plain), strict=True):
        np.testing.assert_array_equal(got, want)


def test_replicate_keeps_prng_key():
    key = jax.random.key(3, impl="rbg")
    placed = replicate(data_mesh(1), {"key": key})["key"]
    assert jax.dtypes.issubdtype(placed.dtype, jax.dtypes.prng_key)
    assert str(jax.random.key_impl(placed)) == str(jax.random.key_impl(key))
    assert placed.sharding.is_fully_replicated
    np.testing.assert_array_equal(jax.random.key_data(placed), jax.random.key_data(key))


def test_masked_loss_equals_unpadded_loss(x64):
    x, t, params = make_batch(5, jnp.float64)
    (padded_x, padded_t), mask = pad_batch((x, t), 4)
    masked = masked_loss_value(NETWORK, params, padded_x, padded_t, mask)
    plain = jbp.loss_value(NETWORK, params, x, t)
    np.testing.assert_allclose(masked, plain, rtol=1e-12)

    masked_grads = jax.grad(masked_loss_value, argnums=1)(
        NETWORK, params, padded_x, padded_t, mask
    )
    plain_grads = jbp.autodiff_grad(NETWORK, params, x, t)
    for got, want in zip(
        jax.tree.leaves(masked_grads), jax.tree.leaves(plain_grads), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_masked_rows_never_count(x64):
    # Padded rows far from the data would dominate an unmasked mean. Masked, the
    # loss and the gradient must be bit for bit those of zero padding.
    x, t, params = make_batch(5, jnp.float64)
    (zero_x, zero_t), mask = pad_batch((x, t), 4)
    large_x = jnp.where(mask[:, None], zero_x, 1e6)
    large_t = jnp.where(mask[:, None], zero_t, 1.0)

    def loss_and_grad(x, t):
        return jax.value_and_grad(masked_loss_value, argnums=1)(
            NETWORK, params, x, t, mask
        )

    zero_loss, zero_grads = loss_and_grad(zero_x, zero_t)
    large_loss, large_grads = loss_and_grad(large_x, large_t)
    assert float(large_loss) == float(zero_loss)
    for got, want in zip(
        jax.tree.leaves(large_grads), jax.tree.leaves(zero_grads), strict=True
    ):
        np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def eight_devices():
    """Run the eight-device comparison once, in a process that starts with 8 CPUs."""
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
    )
    completed = subprocess.run(
        [sys.executable, str(RUNS), "eight-devices"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.splitlines()[-1])


def test_eight_devices_split_batch(eight_devices):
    assert eight_devices["devices"] == 8
    assert eight_devices["x_spec"] == "P('data',)"
    assert eight_devices["x_shard_shapes"] == [[8, 4]] * 8
    assert eight_devices["x_shard_devices"] == 8
    assert eight_devices["constrained_spec"] == "P('data',)"


def test_eight_devices_replicate_state(eight_devices):
    assert eight_devices["params_replicated"]
    assert eight_devices["params_devices"] == 8
    assert eight_devices["opt_state_replicated"]


def test_eight_devices_reduce_gradients_in_xla(eight_devices):
    assert eight_devices["has_all_reduce"]


def test_eight_devices_match_one_device(eight_devices):
    # Eight devices sum the per-example gradients in eight partial sums and an
    # all-reduce, one device in one sum, so float32 results differ by rounding
    # alone. Float64 shows it: the same 20 Adam steps agree to 4e-16 there. In
    # float32 the difference measured on this test is about 2e-7 of the largest
    # value (two units in the last place). 1e-5 leaves room for other reduction
    # orders, while a real error moves the parameters by far more: training on
    # the first shard's 8 examples alone differs by 0.7.
    assert eight_devices["float64_difference"] < 1e-12
    assert eight_devices["float32_difference"] < 1e-5


def test_eight_devices_reject_uneven_batch(eight_devices):
    assert "61 examples" in eight_devices["uneven_error"]
    assert "pad_batch" in eight_devices["uneven_error"]


def test_eight_devices_padded_training(eight_devices):
    # 61 examples padded to 64 and trained with the masked loss on 8 devices
    # match 61 examples on one device (rounding only, as above) ...
    assert eight_devices["padded_shape"] == [64, 4]
    assert eight_devices["masked_vs_unpadded"] < 1e-5
    # ... and what the padded rows hold changes nothing at all.
    assert eight_devices["padding_value_changes_result"] == 0.0


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_train_and_checkpoint(tmp_path):
    # Two processes with two CPU devices each, joined by jax.distributed on this
    # machine, stand in for two hosts.
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
    )
    port = str(free_port())
    children = [
        subprocess.Popen(
            [sys.executable, str(RUNS), "two-processes", str(i), port, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = []
    try:
        for child in children:
            stdout, stderr = child.communicate(timeout=300)
            assert child.returncode == 0, stderr[-3000:]
            results.append(json.loads(stdout.splitlines()[-1]))
    finally:
        for child in children:
            child.kill()
            child.wait()

    for result in results:
        assert result["devices"] == 4
        assert result["local_devices"] == 2
        # Each process keeps only the rows of its own two devices.
        assert result["x_local_shapes"] == [[16, 4], [16, 4]]
        # Rounding only, as for eight devices in one process.
        assert result["difference"] < 1e-5
        assert result["restored_difference"] == 0.0
        assert result["restored_key"] == [0, 4]
        assert result["restored_epoch"] == 2
