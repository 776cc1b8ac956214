"""Training in one compiled scan: equal to a Python loop, frozen leaves, one compile."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jbp import (
    Network,
    ValidationError,
    init_opt_state,
    init_params,
    make_step,
    read_network_file,
    train,
    with_frozen,
)


@pytest.fixture
def problem():
    network = Network((3, 4, 2), ("tanh", "sigmoid"), train_biases=(False, True))
    params = init_params(network, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, 3))
    t = jax.random.uniform(jax.random.key(2), (5, 2))
    return network, params, x, t


@pytest.mark.parametrize("rule", ["gradient", "layerwise"])
@pytest.mark.parametrize(
    "optimizer",
    [optax.sgd(0.5), optax.sgd(0.1, momentum=0.9), optax.adam(0.01)],
    ids=["sgd", "momentum", "adam"],
)
def test_scan_equals_python_loop(problem, rule, optimizer):
    network, params, x, t = problem
    result = train(network, params, x, t, optimizer, 7, rule=rule)

    wrapped = with_frozen(network, optimizer)
    step = make_step(network, wrapped, rule=rule)
    state = wrapped.init(params)
    losses = []
    for _ in range(7):
        params, state, value = step(params, state, x, t)
        losses.append(value)

    chex.assert_trees_all_close(result.params, params, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(result.losses, jnp.stack(losses), rtol=1e-6)


def test_frozen_leaves_do_not_move(problem):
    network, params, x, t = problem
    result = train(network, params, x, t, optax.adam(0.1), 20)
    chex.assert_trees_all_equal(result.params[0].b, params[0].b)
    assert not np.array_equal(result.params[1].b, params[1].b)
    assert not np.array_equal(result.params[0].w, params[0].w)


def test_second_call_does_not_recompile(problem):
    network, params, x, t = problem
    optimizer = optax.sgd(0.5)
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    train(network, params, x, t, optimizer, 3)
    other_x, other_t = x + 1.0, t * 0.5
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        train(network, params, other_x, t, optimizer, 3)
        train(network, params, x, other_t, optimizer, 3)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []


def test_new_learning_rate_does_not_recompile(problem):
    network, params, x, t = problem
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=0.5)
    state = init_opt_state(network, optimizer, params)
    train(network, params, x, t, optimizer, 3, opt_state=state)
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    inner = state.inner_states["train"].inner_state
    inner.hyperparams["learning_rate"] = jnp.asarray(0.05, jnp.float32)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        slow = train(network, params, x, t, optimizer, 3, opt_state=state)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []
    fast = train(network, params, x, t, optax.sgd(0.5), 3)
    assert not np.allclose(slow.params[0].w, fast.params[0].w)


@pytest.mark.parametrize("rule", ["gradient", "layerwise"])
def test_float32_agrees_with_float64(rule):
    example = read_network_file()
    single = train(
        example.network,
        example.params(jnp.float32),
        example.x,
        example.t,
        optax.sgd(0.5),
        100,
        rule=rule,
    )
    with jax.enable_x64(True):
        double = train(
            example.network,
            example.params(jnp.float64),
            example.x,
            example.t,
            optax.sgd(0.5),
            100,
            rule=rule,
        )
        expected = jax.tree.map(np.asarray, double)
    assert single.losses.dtype == jnp.float32
    chex.assert_trees_all_close(
        jax.tree.map(np.asarray, single.params), expected.params, atol=1e-6
    )
    chex.assert_trees_all_close(np.asarray(single.losses), expected.losses, atol=1e-6)


def test_zero_steps_returns_start(problem):
    network, params, x, t = problem
    result = train(network, params, x, t, optax.sgd(0.5), 0)
    chex.assert_shape(result.losses, (0,))
    chex.assert_trees_all_equal(result.params, params)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"x": jnp.ones((5, 4))},
            r"x has shape \(5, 4\); network 3-4-2 expects \(\.\.\., 3\)",
        ),
        ({"t": jnp.ones((5, 3))}, r"t has shape \(5, 3\); expected \(5, 2\)"),
        ({"steps": -1}, "steps must be 0 or more, got -1"),
        (
            {"rule": "backwards"},
            "unknown update rule 'backwards'; expected one of: gradient, layerwise",
        ),
        ({"loss": "hinge"}, "unknown loss 'hinge'; expected one of"),
        (
            {"loss": "cross_entropy"},
            "loss 'cross_entropy' needs a softmax or identity output layer",
        ),
    ],
    ids=["inputs", "targets", "steps", "rule", "loss", "loss-output"],
)
def test_train_rejects_bad_arguments(problem, change, message):
    network, params, x, t = problem
    arguments = {"x": x, "t": t, "steps": 2, "rule": "gradient", "loss": "half_sse"}
    arguments.update(change)
    with pytest.raises(ValidationError, match=message):
        train(
            network,
            params,
            arguments["x"],
            arguments["t"],
            optax.sgd(0.5),
            arguments["steps"],
            rule=arguments["rule"],
            loss=arguments["loss"],
        )


def test_train_rejects_mismatched_params(problem):
    network, params, x, t = problem
    wrong = (params[0]._replace(w=jnp.ones((4, 2))), params[1])
    with pytest.raises(
        ValidationError,
        match=r"params\[0\]\.w has shape \(4, 2\); network 3-4-2 expects \(4, 3\)",
    ):
        train(network, wrong, x, t, optax.sgd(0.5), 2)
