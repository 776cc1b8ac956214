"""Runs that the tests start in a fresh Python process, one per command.

A fresh process is needed where JAX's start-up settings differ from the test
process's (the forced host device count) or where the test is about a new process
(resuming from a checkpoint, a save killed halfway). Each command prints one JSON
object on stdout for the test to check.

    python tests/subprocess_runs.py eight-devices
    python tests/subprocess_runs.py fit-eight-devices
    python tests/subprocess_runs.py resume DIRECTORY STEPS
    python tests/subprocess_runs.py slow-save DIRECTORY
    python tests/subprocess_runs.py two-processes PROCESS_ID PORT DIRECTORY
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jbp
from jbp.checkpoint import restore_checkpoint, save_checkpoint
from jbp.sharding import (
    constrain_batch,
    data_mesh,
    masked_loss_value,
    pad_batch,
    replicate,
    shard_batch,
)

# A small classifier trained with Adam, whose state (moments and a step count)
# must survive a checkpoint and be reduced correctly across devices.
NETWORK = jbp.Network(sizes=(4, 16, 3), activations=("tanh", "softmax"))
LOSS = "cross_entropy"
OPTIMIZER = optax.adam(0.01)
EXAMPLES = 64


def make_data(examples: int = EXAMPLES, dtype=jnp.float32):
    """Return inputs, integer labels and initial parameters, all from fixed seeds."""
    x_key, t_key = jax.random.split(jax.random.key(1))
    x = jax.random.normal(x_key, (examples, NETWORK.in_size), dtype=dtype)
    t = jax.random.randint(t_key, (examples,), 0, NETWORK.out_size)
    params = jbp.init_params(NETWORK, jax.random.key(0), dtype=dtype)
    return x, t, params


def initial_state(params) -> dict:
    """Return the training state that the resume test checkpoints."""
    return {
        "params": params,
        "opt_state": jbp.init_opt_state(NETWORK, OPTIMIZER, params),
        "key": jax.random.key(7),
        "step": jnp.int32(0),
        "epoch": 0,
        "losses": jnp.zeros((0,), dtype=jnp.float32),
    }


def train_on_mesh(num_devices: int, steps: int, dtype=jnp.float32):
    """Train with the batch split over ``num_devices`` devices."""
    mesh = data_mesh(num_devices)
    x, t, params = make_data(dtype=dtype)
    x, t = shard_batch(mesh, (x, t))
    params = replicate(mesh, params)
    opt_state = replicate(mesh, jbp.init_opt_state(NETWORK, OPTIMIZER, params))
    result = jbp.train(
        NETWORK, params, x, t, OPTIMIZER, steps, loss=LOSS, opt_state=opt_state
    )
    return result, x


def max_relative_difference(a, b) -> float:
    """Return ``max |a - b| / max(|b|, 1)`` over every leaf of two trees."""
    worst = 0.0
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        left, right = np.asarray(left), np.asarray(right)
        scale = max(float(np.max(np.abs(right), initial=0.0)), 1.0)
        worst = max(worst, float(np.max(np.abs(left - right), initial=0.0)) / scale)
    return worst


@jax.jit
def masked_step(params, opt_state, x, t, mask):
    """Apply one Adam step to the masked loss of a padded batch."""
    value, grads = jax.value_and_grad(masked_loss_value, argnums=1)(
        NETWORK, params, x, t, mask, LOSS
    )
    updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


def masked_training(num_devices: int, examples: int, steps: int, pad_value: float):
    """Train on a padded batch with the masked loss; padded rows hold ``pad_value``."""
    mesh = data_mesh(num_devices)
    x, t, params = make_data(examples)
    (x, t), mask = pad_batch((x, t), mesh.size)
    x = jnp.where(mask[:, None], x, pad_value)
    x, t, mask = shard_batch(mesh, (x, t, mask))
    params = replicate(mesh, params)
    opt_state = replicate(mesh, OPTIMIZER.init(params))
    losses = []
    for _ in range(steps):
        params, opt_state, value = masked_step(params, opt_state, x, t, mask)
        losses.append(value)
    return params, jnp.stack(losses), x


def eight_devices() -> dict:
    """Compare 8 devices with 1, and report where the arrays live."""
    steps = 20
    one, _ = train_on_mesh(1, steps)
    eight, x = train_on_mesh(8, steps)
    with jax.enable_x64(True):
        one64, _ = train_on_mesh(1, steps, jnp.float64)
        eight64, _ = train_on_mesh(8, steps, jnp.float64)
        float64_difference = max_relative_difference(eight64, one64)

    mesh = data_mesh(8)
    x_plain, t_plain, params = make_data()
    x_sharded, t_sharded = shard_batch(mesh, (x_plain, t_plain))
    params = replicate(mesh, params)
    opt_state = replicate(mesh, jbp.init_opt_state(NETWORK, OPTIMIZER, params))
    step = jax.jit(jbp.make_step(NETWORK, OPTIMIZER, LOSS))
    hlo = step.lower(params, opt_state, x_sharded, t_sharded).compile().as_text()
    constrained = jax.jit(lambda a: constrain_batch(mesh, 2 * a))(
        replicate(mesh, x_plain)
    )

    uneven = 61
    try:
        shard_batch(mesh, make_data(uneven)[:2])
        uneven_error = None
    except jbp.ValidationError as error:
        uneven_error = str(error)
    x_uneven, t_uneven, params_uneven = make_data(uneven)
    reference = jbp.train(
        NETWORK, params_uneven, x_uneven, t_uneven, OPTIMIZER, steps, loss=LOSS
    )
    masked_zeros, losses_zeros, x_padded = masked_training(8, uneven, steps, 0.0)
    masked_large, losses_large, _ = masked_training(8, uneven, steps, 1e3)

    return {
        "devices": jax.device_count(),
        "x_spec": str(x.sharding.spec),
        "x_shard_shapes": [list(s.data.shape) for s in x.addressable_shards],
        "x_shard_devices": len({s.device for s in x.addressable_shards}),
        "constrained_spec": str(constrained.sharding.spec),
        "params_replicated": all(
            leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(eight.params)
        ),
        "params_devices": len(eight.params[0].w.sharding.device_set),
        "opt_state_replicated": all(
            leaf.sharding.is_fully_replicated
            for leaf in jax.tree.leaves(eight.opt_state)
        ),
        "float32_difference": max_relative_difference(eight, one),
        "float64_difference": float64_difference,
        "has_all_reduce": "all-reduce" in hlo,
        "uneven_error": uneven_error,
        "padded_shape": list(x_padded.shape),
        "masked_vs_unpadded": max_relative_difference(
            (masked_zeros, losses_zeros), (reference.params, reference.losses)
        ),
        "padding_value_changes_result": max_relative_difference(
            (masked_large, losses_large), (masked_zeros, losses_zeros)
        ),
    }


def fit_on_mesh(num_devices: int, batch_size: int, dtype=jnp.float32):
    """Run ``jbp.fit`` for a few epochs with each batch split over the devices."""
    mesh = data_mesh(num_devices) if num_devices > 1 else None
    x, t, params = make_data(dtype=dtype)
    state = jbp.init_state(NETWORK, OPTIMIZER, params, key=3)
    return jbp.fit(
        NETWORK,
        state,
        x,
        t,
        OPTIMIZER,
        4,
        batch_size=batch_size,
        loss=LOSS,
        mesh=mesh,
    )


def trained(result: jbp.FitResult) -> tuple:
    """Return the floating-point parts of a fit result: state and metrics."""
    state = result.state
    return state.params, state.opt_state, tuple(result.history)[1:]


def fit_eight_devices() -> dict:
    """Compare ``jbp.fit`` on 8 devices with 1, in float32 and float64.

    The batch size 12 does not divide across 8 devices, so fit pads every batch
    to 16 with masked slots, and the 64 examples leave a last batch of 4 real
    examples: both kinds of padding are exercised.
    """
    batch_size = 12
    one = fit_on_mesh(1, batch_size)
    eight = fit_on_mesh(8, batch_size)
    with jax.enable_x64(True):
        one64 = fit_on_mesh(1, batch_size, jnp.float64)
        eight64 = fit_on_mesh(8, batch_size, jnp.float64)
        float64_difference = max_relative_difference(trained(eight64), trained(one64))
    return {
        "devices": jax.device_count(),
        "float32_difference": max_relative_difference(trained(eight), trained(one)),
        "float64_difference": float64_difference,
        "steps": [int(one.state.step), int(eight.state.step)],
        "params_devices": len(eight.params[0].w.sharding.device_set),
        "state_replicated": all(
            leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(eight.state)
        ),
    }


def resume(directory: str, steps: int) -> dict:
    """Restore the latest checkpoint, train ``steps`` more and return the result."""
    x, t, params = make_data()
    state = restore_checkpoint(directory, like=initial_state(params))
    result = jbp.train(
        NETWORK,
        state["params"],
        x,
        t,
        OPTIMIZER,
        steps,
        loss=LOSS,
        opt_state=state["opt_state"],
    )
    return {
        "step": int(state["step"]),
        "epoch": state["epoch"],
        "key_data": np.asarray(jax.random.key_data(state["key"])).tolist(),
        "params": [
            np.asarray(leaf).tolist() for leaf in jax.tree.leaves(result.params)
        ],
        "losses": np.asarray(
            jnp.concatenate([state["losses"], result.losses])
        ).tolist(),
    }


def slow_save(directory: str) -> dict:
    """Save a small checkpoint, then a large one that the test kills halfway."""
    save_checkpoint(directory, 1, {"step": jnp.int32(1), "w": jnp.arange(4.0)})
    print("saved step 1", file=sys.stderr, flush=True)
    # 64 MB of random float32, which does not compress: the save takes long
    # enough (tenths of a second) for the test to see the temporary directory.
    large = jax.random.normal(jax.random.key(0), (16_000_000,))
    save_checkpoint(directory, 2, {"step": jnp.int32(2), "w": large})
    return {"finished": True}


def two_processes(process_id: int, port: int, directory: str) -> dict:
    """Train and checkpoint as one of two processes with two CPU devices each."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=2,
        process_id=process_id,
    )
    steps = 5
    mesh = data_mesh()
    x_plain, t_plain, params_plain = make_data()
    x, t = shard_batch(mesh, (x_plain, t_plain))
    params = replicate(mesh, params_plain)
    opt_state = replicate(mesh, jbp.init_opt_state(NETWORK, OPTIMIZER, params))
    sharded = jbp.train(
        NETWORK, params, x, t, OPTIMIZER, steps, loss=LOSS, opt_state=opt_state
    )
    params = sharded.params
    reference = jbp.train(
        NETWORK, params_plain, x_plain, t_plain, OPTIMIZER, steps, loss=LOSS
    )

    def local_copy(tree):
        return [
            np.asarray(leaf.addressable_shards[0].data)
            for leaf in jax.tree.leaves(tree)
        ]

    state = replicate(mesh, {"params": params, "key": jax.random.key(4)})
    state["epoch"] = 2
    save_checkpoint(directory, steps, state)
    restored = restore_checkpoint(directory, like=state)
    return {
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "x_local_shapes": [list(s.data.shape) for s in x.addressable_shards],
        "difference": max_relative_difference(local_copy(params), reference.params),
        "restored_difference": max_relative_difference(
            local_copy(restored["params"]), local_copy(params)
        ),
        "restored_key": local_copy(jax.random.key_data(restored["key"]))[0].tolist(),
        "restored_epoch": restored["epoch"],
    }


def main(argv: list[str]) -> None:
    command, *rest = argv
    orbax_at_start = "orbax.checkpoint" in sys.modules
    if command == "eight-devices":
        result = eight_devices()
    elif command == "fit-eight-devices":
        result = fit_eight_devices()
    elif command == "resume":
        result = resume(rest[0], int(rest[1]))
    elif command == "two-processes":
        result = two_processes(int(rest[0]), int(rest[1]), rest[2])
    elif command == "slow-save":
        result = slow_save(rest[0])
    else:
        raise SystemExit(f"unknown command {command!r}")
    result["orbax_imported_before_use"] = orbax_at_start
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
