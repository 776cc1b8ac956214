"""Numerical extremes and divergence: finite results, and no silent blow-ups."""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

from jbp import (
    Dense,
    Network,
    autodiff_grad,
    chain_rule_grad,
    loss_value,
    make_step,
    train,
)
from jbp.activations import ACTIVATIONS
from jbp.losses import LOSSES

EXTREME = jnp.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 3.0]], jnp.float32)


def _identity_layer():
    """One layer whose net input equals x, so x contains the logits directly."""
    return (Dense(w=jnp.eye(3, dtype=jnp.float32), b=jnp.zeros(3, jnp.float32)),)


@pytest.mark.parametrize(
    ("output", "loss", "t"),
    [
        ("softmax", "cross_entropy", jnp.array([1, 2])),
        ("softmax", "cross_entropy", jnp.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])),
        (
            "sigmoid",
            "binary_cross_entropy",
            jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.5]]),
        ),
        ("sigmoid", "half_sse", jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.5]])),
        ("softmax", "half_sse", jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])),
    ],
    ids=["ce-labels", "ce-distribution", "bce", "sigmoid-sse", "softmax-sse"],
)
def test_logits_of_1000_stay_finite_in_float32(output, loss, t):
    network = Network((3, 3), (output,))
    params = _identity_layer()
    value = loss_value(network, params, EXTREME, t, loss)
    chex.assert_tree_all_finite(value)
    chex.assert_tree_all_finite(autodiff_grad(network, params, EXTREME, t, loss))
    chex.assert_tree_all_finite(chain_rule_grad(network, params, EXTREME, t, loss))


@pytest.mark.parametrize("labels", ["integer", "distribution"])
def test_minus_infinity_marks_excluded_class(labels):
    logits = jnp.array([[2.0, -jnp.inf, 0.5]])
    t = jnp.array([0]) if labels == "integer" else jnp.array([[1.0, 0.0, 0.0]])
    spec = LOSSES["cross_entropy"]
    value = spec.per_example(logits, logits, t)
    expected = -jax.nn.log_softmax(jnp.array([2.0, 0.5]))[0]
    chex.assert_trees_all_close(value, jnp.array([expected]), rtol=1e-6)
    grad = jax.grad(lambda n: spec.per_example(n, n, t).sum())(logits)
    chex.assert_tree_all_finite(grad)
    assert grad[0, 1] == 0.0


def test_binary_cross_entropy_with_infinite_logit():
    spec = LOSSES["binary_cross_entropy"]
    logits = jnp.array([[-jnp.inf, jnp.inf]])
    t = jnp.array([[0.0, 1.0]])
    assert spec.per_example(logits, logits, t)[0] == 0.0
    grad = jax.grad(lambda n: spec.per_example(n, n, t).sum())(logits)
    chex.assert_tree_all_finite(grad)


def test_sigmoid_derivative_from_output_never_overflows():
    sigmoid = ACTIVATIONS["sigmoid"]
    net = jnp.array([-1000.0, -88.0, 0.0, 88.0, 1000.0], jnp.float32)
    out = sigmoid.forward(net)
    derivative = sigmoid.derivative(net, out)
    chex.assert_tree_all_finite(derivative)
    assert derivative[0] == 0.0
    assert derivative[2] == 0.25


def test_divergence_keeps_last_finite_params():
    network = Network((1, 1), ("identity",))
    params = (Dense(w=jnp.array([[1.0]]), b=jnp.array([0.0])),)
    x = jnp.array([[1e6]])
    t = jnp.array([[0.0]])
    result = train(network, params, x, t, optax.sgd(1.0), 12)
    first = int(result.diverged_at)
    assert first > 0
    assert bool(jnp.all(jnp.isfinite(result.losses[:first])))
    assert not bool(jnp.isfinite(result.losses[first]))
    chex.assert_tree_all_finite(result.params)
    # A Python loop of the same steps, stopped before the blow-up, gives the
    # returned parameters.
    optimizer = optax.sgd(1.0)
    step = jax.jit(make_step(network, optimizer))
    expected, state = params, optimizer.init(params)
    for _ in range(first):
        expected, state, _ = step(expected, state, x, t)
    chex.assert_trees_all_close(result.params, expected, rtol=1e-6)


def test_finite_run_reports_no_divergence():
    network = Network((1, 1), ("sigmoid",))
    params = (Dense(w=jnp.array([[0.5]]), b=jnp.array([0.0])),)
    result = train(
        network, params, jnp.ones((2, 1)), jnp.ones((2, 1)), optax.sgd(0.5), 5
    )
    assert int(result.diverged_at) == -1
    unwatched = train(
        network,
        params,
        jnp.ones((2, 1)),
        jnp.ones((2, 1)),
        optax.sgd(0.5),
        5,
        watch_finite=False,
    )
    chex.assert_trees_all_equal(unwatched.params, result.params)
