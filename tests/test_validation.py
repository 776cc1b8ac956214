"""Bad input at the API boundary: one ValidationError that names the value."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jbp import (
    Dense,
    Network,
    ValidationError,
    autodiff_grad,
    chain_rule_grad,
    forward,
    init_opt_state,
    init_params,
    init_state,
    loss_value,
    params_from_lists,
    set_hyperparameter,
    train,
)
from jbp.validation import MAX_STEPS


@pytest.fixture
def small():
    network = Network((2, 3, 2), ("tanh", "sigmoid"))
    params = init_params(network, jax.random.key(0))
    x = jnp.ones((4, 2))
    t = jnp.full((4, 2), 0.5)
    return network, params, x, t


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"sizes": ()}, r"needs an input size and at least one layer"),
        ({"sizes": (2,)}, r"needs an input size and at least one layer"),
        ({"sizes": None}, r"sizes must be a tuple of layer widths"),
        ({"sizes": (2, 0)}, r"sizes\[1\] must be a positive integer, got 0"),
        ({"sizes": (2, 1.5)}, r"sizes\[1\] must be a positive integer, got 1.5"),
        ({"sizes": (2, True)}, r"sizes\[1\] must be a positive integer, got True"),
        ({"activations": ("sigmoid",)}, r"one name per layer \(2\)"),
        ({"activations": None}, r"one name per layer \(2\), got None"),
        ({"activations": ("sigmoid", "swish")}, r"unknown activation 'swish'"),
        ({"activations": ("sigmoid", ["x"])}, r"unknown activation \['x'\]"),
        ({"activations": ("softmax", "sigmoid")}, r"only supported on the output"),
        ({"shared_bias": 1}, r"shared_bias must be one bool or 2 bools"),
        ({"train_biases": (True,)}, r"train_biases must be one bool or 2 bools"),
    ],
    ids=lambda value: str(value)[:30],
)
def test_network_rejects(arguments, message):
    fields = {"sizes": (2, 3, 2), "activations": ("tanh", "sigmoid")}
    fields.update(arguments)
    with pytest.raises(ValidationError, match=message):
        Network(**fields)


def test_network_accepts_numpy_integers_and_bools():
    network = Network((2, np.int64(3), 2), ["sigmoid", "sigmoid"], np.bool_(True))
    assert network.sizes == (2, 3, 2)
    assert network.shared_bias == (True, True)
    assert hash(network) == hash(Network((2, 3, 2), ("sigmoid", "sigmoid"), True))


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (
            jnp.ones((4, 3)),
            r"x has shape \(4, 3\); network 2-3-2 expects \(\.\.\., 2\)",
        ),
        (jnp.ones((0, 2)), r"x has shape \(0, 2\), which contains no examples"),
        ([[1.0, 2.0], [3.0]], r"x must be a rectangular array of numbers"),
        ("abc", r"x must be a rectangular array of numbers, got str"),
        (jnp.array([[1.0, jnp.nan]] * 4), r"x\[0, 1\] is nan; every value must be"),
        (jnp.array([[1.0, 2.0]] * 3 + [[jnp.inf, 0.0]]), r"x\[3, 0\] is inf"),
    ],
    ids=["features", "empty", "ragged", "text", "nan", "inf"],
)
def test_inputs_rejected_everywhere(small, x, message):
    network, params, _, t = small
    with pytest.raises(ValidationError, match=message):
        forward(network, params, x)
    with pytest.raises(ValidationError, match=message):
        train(network, params, x, t, optax.sgd(0.1), 1)


def test_integer_inputs_are_cast_to_float(small):
    network, params, _, _ = small
    out = forward(network, params, jnp.ones((4, 2), jnp.int32))
    assert out.dtype == jnp.float32


@pytest.mark.parametrize(
    "function", [loss_value, autodiff_grad, chain_rule_grad], ids=lambda f: f.__name__
)
def test_gradients_check_targets(small, function):
    network, params, x, _ = small
    with pytest.raises(
        ValidationError, match=r"t has shape \(4, 3\); expected \(4, 2\)"
    ):
        function(network, params, x, jnp.ones((4, 3)))


@pytest.mark.parametrize(
    ("loss", "t", "message"),
    [
        ("cross_entropy", [0, 5, 1, 0], r"labels from 0 to 5, but the output layer"),
        ("cross_entropy", [[0.5, 0.0]] * 4, r"a row that sums to 0.5"),
        ("cross_entropy", [[1.5, -0.5]] * 4, r"values from -0.5 to 1.5"),
        ("binary_cross_entropy", [[1.5, 0.0]] * 4, r"between 0 and 1"),
    ],
    ids=["label-range", "row-sum", "negative", "bce-range"],
)
def test_probability_targets_checked(loss, t, message):
    output = "softmax" if loss == "cross_entropy" else "sigmoid"
    network = Network((2, 2), (output,))
    params = init_params(network, jax.random.key(0))
    with pytest.raises(ValidationError, match=message):
        loss_value(network, params, jnp.ones((4, 2)), t, loss)


def test_integer_labels_as_python_list():
    network = Network((2, 3), ("softmax",))
    params = init_params(network, jax.random.key(0))
    value = loss_value(network, params, jnp.ones((2, 2)), [0, 2], "cross_entropy")
    expected = loss_value(
        network,
        params,
        jnp.ones((2, 2)),
        jnp.eye(3)[jnp.array([0, 2])],
        "cross_entropy",
    )
    assert jnp.allclose(value, expected)


@pytest.mark.parametrize(
    ("params_change", "message"),
    [
        (lambda p: p[:1], r"params must hold one Dense\(w, b\) per layer"),
        (lambda p: (p[0], "w"), r"params\[1\] must be a Dense\(w, b\) record"),
        (
            lambda p: (p[0]._replace(w=jnp.ones((3, 2), jnp.int32)), p[1]),
            r"params\[0\]\.w has dtype int32",
        ),
        (
            lambda p: (p[0]._replace(b=jnp.full((3,), jnp.nan)), p[1]),
            r"params\[0\]\.b\[0\] is nan",
        ),
    ],
    ids=["count", "record", "dtype", "nan"],
)
def test_params_rejected(small, params_change, message):
    network, params, x, t = small
    with pytest.raises(ValidationError, match=message):
        train(network, params_change(params), x, t, optax.sgd(0.1), 1)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (-1, "steps must be 0 or more, got -1"),
        (2.5, "steps must be a whole number, got 2.5"),
        (True, "steps must be a whole number, got True"),
        (MAX_STEPS + 1, "more than the 100,000,000 one call can train"),
    ],
    ids=["negative", "float", "bool", "too-many"],
)
def test_steps_rejected(small, steps, message):
    network, params, x, t = small
    with pytest.raises(ValidationError, match=message):
        train(network, params, x, t, optax.sgd(0.1), steps)


def test_steps_accepts_array_integer(small):
    network, params, x, t = small
    result = train(network, params, x, t, optax.sgd(0.1), jnp.int32(2))
    assert result.losses.shape == (2,)


def test_optimizer_and_state_checked(small):
    network, params, x, t = small
    with pytest.raises(ValidationError, match="optimizer must be an Optax"):
        train(network, params, x, t, optax.sgd, 1)
    state = init_opt_state(network, optax.adam(0.1), params)
    with pytest.raises(ValidationError, match="opt_state does not match"):
        train(network, params, x, t, optax.sgd(0.1), 1, opt_state=state)


def test_float64_without_x64_is_rejected():
    network = Network((2, 2), ("sigmoid",))
    with pytest.raises(ValidationError, match="float64 needs JAX's 64-bit mode"):
        init_params(network, jax.random.key(0), jnp.float64)
    with pytest.raises(ValidationError, match="float64 needs JAX's 64-bit mode"):
        params_from_lists(network, [[[1, 0], [0, 1]]], [0.0], jnp.float64)


def test_params_from_lists_reads_integer_weights():
    network = Network((2, 2), ("sigmoid",), shared_bias=True)
    params = params_from_lists(network, [[[0, 1], [1, 0]]], [0])
    assert params[0].w.dtype == jnp.float32
    assert isinstance(params[0], Dense)


def test_init_params_checks_key_and_dtype():
    network = Network((2, 2), ("sigmoid",))
    with pytest.raises(ValidationError, match="key must be a JAX PRNG key"):
        init_params(network, 0)
    with pytest.raises(ValidationError, match="must be a floating dtype"):
        init_params(network, jax.random.key(0), jnp.int32)


@pytest.mark.parametrize("rate", [0.0, -0.5, float("nan"), float("inf"), "0.1"])
def test_set_learning_rate_rejects_bad_values(small, rate):
    network, params, _, _ = small
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    state = init_state(network, optimizer, params, key=0)
    with pytest.raises(ValidationError, match="learning_rate must be"):
        set_hyperparameter(state, "learning_rate", rate)
