"""Weight initialisers: chosen per activation, by name or per layer."""

import jax
import numpy as np
import pytest

from jbp import Network, ValidationError, init_params


@pytest.mark.parametrize(
    ("activation", "variance"),
    [
        ("relu", lambda fan_in, fan_out: 2.0 / fan_in),
        ("gelu", lambda fan_in, fan_out: 2.0 / fan_in),
        ("tanh", lambda fan_in, fan_out: 2.0 / (fan_in + fan_out)),
        ("sigmoid", lambda fan_in, fan_out: 2.0 / (fan_in + fan_out)),
        ("identity", lambda fan_in, fan_out: 1.0 / fan_in),
    ],
    ids=["relu-he", "gelu-he", "tanh-glorot", "sigmoid-glorot", "identity-lecun"],
)
def test_default_initializer_variance(activation, variance):
    fan_in, fan_out = 400, 300
    network = Network((fan_in, fan_out), (activation,))
    w = np.asarray(init_params(network, jax.random.key(0))[0].w)
    assert w.shape == (fan_out, fan_in)
    np.testing.assert_allclose(w.var(), variance(fan_in, fan_out), rtol=0.05)


def test_initializer_by_name_and_per_layer():
    network = Network((50, 40, 30), ("relu", "relu"))
    params = init_params(network, jax.random.key(1), initializer=["zeros", None])
    assert not np.asarray(params[0].w).any()
    np.testing.assert_allclose(np.asarray(params[1].w).var(), 2.0 / 40, rtol=0.2)
    glorot = init_params(network, jax.random.key(1), initializer="glorot_normal")
    np.testing.assert_allclose(
        np.asarray(glorot[0].w).var(), 2.0 / (50 + 40), rtol=0.15
    )


@pytest.mark.parametrize(
    ("initializer", "message"),
    [
        ("xavier", "unknown initializer 'xavier'; expected one of: glorot_normal"),
        (["zeros"], r"initializer needs one entry per layer \(2\), got 1"),
    ],
    ids=["name", "count"],
)
def test_initializer_rejects_bad_choice(initializer, message):
    network = Network((2, 2, 1), ("tanh", "sigmoid"))
    with pytest.raises(ValidationError, match=message):
        init_params(network, jax.random.key(0), initializer=initializer)
