"""Minibatch training: equal to a Python loop, the remainder rule, one compile,
resumption bit for bit, divergence and bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jbp import (
    DivergenceError,
    Network,
    TrainingInterrupted,
    ValidationError,
    autodiff_grad,
    fit,
    forward,
    init_params,
    init_state,
    loss_value,
    set_hyperparameter,
)

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

# One optimiser object per kind, shared by the tests: the compiled chunk is cached
# per optimiser object, so sharing keeps the suite to a few compilations.
SGD = optax.sgd(0.5)
ADAM = optax.adam(0.05)


@pytest.fixture
def problem():
    network = Network((3, 4, 2), ("tanh", "sigmoid"))
    params = init_params(network, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (7, 3))
    t = jax.random.uniform(jax.random.key(2), (7, 2))
    return network, params, x, t


def python_loop(network, params, x, t, optimizer, epochs, batch_size, key, loss):
    """Train with plain Python loops over epochs and batches, as a second route.

    Each batch's loss is the mean loss of its real examples times their count over
    the nominal batch size, which is the documented remainder rule.
    """

    @jax.jit
    def step(params, state, xb, tb, share):
        def objective(p):
            return share * loss_value(network, p, xb, tb, loss)

        value, grads = jax.value_and_grad(objective)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    n = x.shape[0]
    state = optimizer.init(params)
    step_losses = []
    for epoch in range(epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            share = len(rows) / batch_size
            params, state, value = step(params, state, x[rows], t[rows], share)
            step_losses.append(value)
    return params, np.asarray(step_losses)


@pytest.mark.parametrize(
    "optimizer",
    [SGD, ADAM],
    ids=["sgd", "adam"],
)
def test_scan_equals_python_loop(problem, optimizer):
    network, params, x, t = problem
    key = jax.random.key(5)
    state = init_state(network, optimizer, params, key)
    result = fit(network, state, x, t, optimizer, 3, batch_size=3, chunk_epochs=2)

    expected, step_losses = python_loop(
        network, params, x, t, optimizer, 3, 3, key, "half_sse"
    )
    chex.assert_trees_all_close(result.params, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.history.step_loss, step_losses, rtol=1e-5)
    assert int(result.state.step) == 9
    assert int(result.state.epoch) == 3


def test_padded_batch_example_weight(problem):
    network, params, x, t = problem
    x, t = x[:3], t[:3]
    optimizer = SGD
    key = jax.random.key(11)
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), 3))
    state = init_state(network, optimizer, params, key)
    result = fit(network, state, x, t, optimizer, 1, batch_size=2)

    # Step 1: the mean over two examples. Step 2: the third example alone, with
    # half the weight it would have in a batch of one.
    gradient = jax.jit(autodiff_grad, static_argnums=0)
    value = jax.jit(loss_value, static_argnums=0)
    first, last = order[:2], order[2:]
    grads = gradient(network, params, x[first], t[first])
    middle = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    grads = gradient(network, middle, x[last], t[last])
    expected = jax.tree.map(lambda p, g: p - 0.5 * 0.5 * g, middle, grads)
    chex.assert_trees_all_close(result.params, expected, rtol=1e-6, atol=1e-7)

    losses = [value(network, params, x[i], t[i]) for i in first] + [
        value(network, middle, x[last], t[last])
    ]
    np.testing.assert_allclose(result.history.train_loss, [np.mean(losses)], rtol=1e-6)
    np.testing.assert_allclose(result.history.step_loss[1], losses[2] / 2, rtol=1e-6)


def test_identical_examples_give_single_example_step(problem):
    network, params, x, t = problem
    optimizer = SGD
    state = init_state(network, optimizer, params, 0)
    copies = 4
    many = fit(
        network,
        state,
        jnp.repeat(x[:1], copies, axis=0),
        jnp.repeat(t[:1], copies, axis=0),
        optimizer,
        1,
        batch_size=copies,
    )
    single = fit(network, state, x[:1], t[:1], optimizer, 1, batch_size=1)
    chex.assert_trees_all_equal(many.params, single.params)
    assert many.history.step_loss[0] == single.history.step_loss[0]


def test_no_recompile_on_new_data_or_rate(problem):
    network, params, x, t = problem
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=0.5)
    state = init_state(network, optimizer, params, 0)
    first = fit(network, state, x, t, optimizer, 2, batch_size=3)
    slower = set_hyperparameter(state, "learning_rate", 0.05)
    other_x = x + 1.0
    jnp.zeros(1).block_until_ready()

    compiles = []

    def listener(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        fit(network, state, other_x, t, optimizer, 2, batch_size=3)
        slow = fit(network, slower, x, t, optimizer, 2, batch_size=3)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []
    assert not np.allclose(slow.params[0].w, first.params[0].w)

    expected = fit(
        network,
        init_state(network, optax.sgd(0.05), params, 0),
        x,
        t,
        optax.sgd(0.05),
        2,
        batch_size=3,
    )
    chex.assert_trees_all_close(slow.params, expected.params, rtol=1e-6)


def test_resume_equals_straight_run(problem):
    network, params, x, t = problem
    optimizer = ADAM
    state = init_state(network, optimizer, params, 9)
    # Chunks of 3 epochs are compiled by the Python-loop test already.
    straight = fit(network, state, x, t, optimizer, 6, batch_size=3, chunk_epochs=2)
    half = fit(network, state, x, t, optimizer, 3, batch_size=3)
    rest = fit(network, half.state, x, t, optimizer, 3, batch_size=3)

    chex.assert_trees_all_equal(straight.state, rest.state)
    joined = half.history.concatenate(rest.history)
    np.testing.assert_array_equal(joined.epoch, np.arange(1, 7))
    np.testing.assert_array_equal(joined.step_loss, straight.history.step_loss)


def test_held_out_metrics_at_chosen_epochs():
    network = Network((2, 3), ("softmax",))
    params = init_params(network, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (10, 2))
    labels = jnp.arange(10) % 3
    x_eval, t_eval = x[:6] * 2.0, labels[:6]
    optimizer = optax.sgd(0.1)
    state = init_state(network, optimizer, params, 0)
    result = fit(
        network,
        state,
        x,
        labels,
        optimizer,
        4,
        batch_size=5,
        loss="cross_entropy",
        eval_data=(x_eval, t_eval),
        eval_every=2,
    )
    history = result.history
    assert np.isnan(history.eval_loss[[0, 2]]).all()
    epochs, losses, accuracies = history.evaluated()
    np.testing.assert_array_equal(epochs, [2, 4])

    expected_loss = loss_value(network, result.params, x_eval, t_eval, "cross_entropy")
    predicted = jnp.argmax(forward(network, result.params, x_eval), axis=-1)
    expected_accuracy = jnp.mean(predicted == t_eval)
    np.testing.assert_allclose(losses[-1], expected_loss, rtol=1e-6)
    np.testing.assert_allclose(accuracies[-1], expected_accuracy)


def test_divergence_keeps_last_finite_state():
    network = Network((2, 2), ("identity",))
    params = init_params(network, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 2)) * 10
    t = jnp.ones((4, 2))
    optimizer = optax.sgd(1e4)
    state = init_state(network, optimizer, params, 0)

    with pytest.raises(DivergenceError, match="training diverged: step") as caught:
        fit(network, state, x, t, optimizer, 50, batch_size=4, chunk_epochs=20)
    result = caught.value.result
    returned = fit(
        network,
        state,
        x,
        t,
        optimizer,
        50,
        batch_size=4,
        chunk_epochs=20,
        on_divergence="return",
    )
    chex.assert_trees_all_equal(returned.state, result.state)
    bad = result.nonfinite_step
    assert result.diverged
    assert bad is not None and 0 < bad < 20
    assert int(result.state.step) == bad
    # Training stopped at the end of the first chunk, not after 50 epochs.
    assert len(result.history.epoch) == 20
    assert np.isnan(result.history.step_loss[bad + 1 :]).all()
    assert not np.isfinite(result.history.step_loss[bad])
    assert np.isfinite(result.history.step_loss[:bad]).all()

    # The kept parameters are exactly those after the last finite step.
    finite = fit(network, state, x, t, optimizer, bad, batch_size=4)
    assert not finite.diverged
    chex.assert_trees_all_equal(result.state.params, finite.state.params)
    chex.assert_trees_all_equal(result.state.opt_state, finite.state.opt_state)
    chex.assert_tree_all_finite(result.params)

    # A diverged state trains no further until its flag is reset.
    with pytest.raises(DivergenceError) as again:
        fit(network, result.state, x, t, optimizer, 20, batch_size=4, chunk_epochs=20)
    assert len(again.value.result.history.epoch) == 0
    chex.assert_trees_all_equal(again.value.result.state, result.state)


def test_ctrl_c_keeps_last_chunk(problem):
    network, params, x, t = problem
    optimizer = SGD
    state = init_state(network, optimizer, params, 0)
    seen = []

    def callback(result):
        seen.append(int(result.state.epoch))
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as caught:
        fit(
            network,
            state,
            x,
            t,
            optimizer,
            10,
            batch_size=7,
            chunk_epochs=3,
            callback=callback,
        )
    assert seen == [3, 6]
    assert int(caught.value.result.state.epoch) == 6
    assert len(caught.value.result.history.epoch) == 6
    assert isinstance(caught.value, KeyboardInterrupt)


def zero_inputs(batch):
    x, t, mask = batch
    return jnp.zeros_like(x), t, mask


def test_constrain_sees_every_batch(problem):
    network, params, x, t = problem
    optimizer = SGD
    state = init_state(network, optimizer, params, 0)
    constrained = fit(
        network, state, x, t, optimizer, 3, batch_size=3, constrain=zero_inputs
    )
    zeros = fit(network, state, jnp.zeros_like(x), t, optimizer, 3, batch_size=3)
    chex.assert_trees_all_close(constrained.params, zeros.params)


@pytest.mark.parametrize(
    ("loss", "output", "targets", "expected"),
    [
        ("cross_entropy", "softmax", jnp.array([1, 0]), 1000.0),
        (
            "binary_cross_entropy",
            "sigmoid",
            jnp.array([[0.0, 1.0, 1.0]] * 2),
            2000.0 + np.log(2.0),
        ),
        ("mse", "sigmoid", jnp.array([[0.0, 1.0, 1.0]] * 2), 2.0 / 3.0),
        ("half_sse", "sigmoid", jnp.array([[0.0, 1.0, 1.0]] * 2), 1.0),
    ],
    ids=["cross-entropy", "binary-cross-entropy", "mse", "half-sse"],
)
def test_losses_finite_for_huge_logits(loss, output, targets, expected):
    # Logits (1000, -1000, 0) for both examples: every loss above is wrong by the
    # full margin on example 0's first two outputs.
    network = Network((1, 3), (output,))
    layer = init_params(network, jax.random.key(0))[0]
    params = (layer._replace(w=jnp.array([[1000.0], [-1000.0], [0.0]], jnp.float32)),)
    x = jnp.ones((2, 1), jnp.float32)
    value = loss_value(network, params, x, targets, loss)
    grads = autodiff_grad(network, params, x, targets, loss)
    assert value.dtype == jnp.float32
    chex.assert_tree_all_finite((value, grads))
    if loss in ("cross_entropy", "binary_cross_entropy"):
        np.testing.assert_allclose(value, expected, rtol=1e-6)
    else:
        # sigmoid(0) = 0.5 contributes (1 - 0.5)^2 for the third output.
        squared = 1.0 + 1.0 + 0.25
        scale = 0.5 if loss == "half_sse" else 1.0 / 3.0
        np.testing.assert_allclose(value, scale * squared, rtol=1e-6)


@pytest.fixture
def classifier():
    network = Network((4, 5, 3), ("relu", "softmax"))
    optimizer = optax.sgd(0.1)
    state = init_state(network, optimizer, init_params(network, jax.random.key(0)), 0)
    x = np.ones((6, 4), np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    return network, optimizer, state, x, labels


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 7}, "batch_size is 7 but the data has only 6 examples; use a"),
        ({"t": np.array([0, 1, 3, 0, 1, 2])}, r"t contains labels from 0 to 3.*0\.\.2"),
        ({"x": np.ones((6, 5))}, r"x has shape \(6, 5\); network 4-5-3 expects"),
        ({"x": np.full((6, 4), np.nan)}, r"x\[0, 0\] is nan; .*remove or replace"),
        ({"x": np.ones((2, 3, 4))}, "fit expects one example per row"),
        ({"epochs": -1}, "epochs must be 0 or more"),
        ({"eval_every": 0}, "eval_every must be at least 1"),
        ({"chunk_epochs": 0}, "chunk_epochs must be at least 1"),
        ({"eval_data": np.ones((2, 4))}, "eval_data must be a pair"),
        (
            {"eval_data": (np.ones((2, 4)), np.array([0, 9]))},
            "eval_data t contains labels from 0 to 9",
        ),
        ({"on_divergence": "ignore"}, "on_divergence must be 'raise' or 'return'"),
        ({"optimizer": optax.adam(0.1)}, "state.opt_state does not match"),
        ({"state": "fresh"}, "state must be a TrainState"),
    ],
    ids=[
        "batch-size",
        "labels",
        "features",
        "non-finite",
        "rank",
        "epochs",
        "eval-every",
        "chunk",
        "eval-pair",
        "eval-labels",
        "divergence-mode",
        "optimizer",
        "state",
    ],
)
def test_fit_rejects_bad_input(classifier, change, message):
    network, optimizer, state, x, labels = classifier
    call = {
        "state": state,
        "x": x,
        "t": labels,
        "optimizer": optimizer,
        "epochs": 1,
        "batch_size": 3,
        "eval_data": None,
        "eval_every": 1,
        "chunk_epochs": None,
        "on_divergence": "raise",
    }
    call.update(change)
    with pytest.raises(ValidationError, match=message):
        fit(network, loss="cross_entropy", **call)


def test_set_hyperparameter_needs_injected_optimizer(classifier):
    _, _, state, _, _ = classifier
    with pytest.raises(ValidationError, match=r"optax\.inject_hyperparams"):
        set_hyperparameter(state, "learning_rate", 0.1)
