"""Fuzzing the training API: every input gets a clean error or a finite result.

Hypothesis feeds ``train`` and ``fit`` inputs and targets that mix shapes, NaN,
infinity, huge values, empty and ragged lists and wrong types. The property: the
call raises ``ValidationError``, or it returns a result whose loss is finite, or one
that reports the first non-finite step. Nothing else may escape from inside JAX.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jbp import (
    DivergenceError,
    Network,
    ValidationError,
    fit,
    init_params,
    init_state,
    train,
)

NETWORK = Network((2, 3, 2), ("tanh", "sigmoid"))
PARAMS = init_params(NETWORK, jax.random.key(0))
OPTIMIZER = optax.sgd(0.1)

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, 1.0, -1.0, 1e30, -1e30, 1e-30]),
    st.integers(-3, 3),
)
junk = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.booleans(),
    st.just({}),
    st.just(object()),
)


@st.composite
def arrays(draw, width):
    """A list (maybe ragged or empty), a NumPy array, or junk."""
    kind = draw(st.sampled_from(["rows", "ragged", "array", "junk", "empty"]))
    if kind == "junk":
        return draw(junk)
    if kind == "empty":
        return draw(st.sampled_from([[], [[]], np.zeros((0, width))]))
    rows = draw(st.integers(1, 4))
    if kind == "ragged":
        return [
            draw(st.lists(numbers, min_size=1, max_size=width + 1)) for _ in range(rows)
        ]
    shape_width = draw(st.sampled_from([width, width, width + 1]))
    values = draw(
        st.lists(numbers, min_size=rows * shape_width, max_size=rows * shape_width)
    )
    array = np.asarray(values, dtype=np.float64).reshape(rows, shape_width)
    return array if kind == "array" else array.tolist()


def _finite_or_reported(losses, diverged: bool) -> bool:
    values = np.asarray(losses)
    return diverged or bool(np.all(np.isfinite(values)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=arrays(2), t=arrays(2))
def test_train_gives_clean_error_or_finite_result(x, t):
    try:
        result = train(NETWORK, PARAMS, x, t, OPTIMIZER, 3)
    except ValidationError as error:
        assert str(error)
        assert "\n" not in str(error)
        return
    assert _finite_or_reported(result.losses, int(result.diverged_at) >= 0)
    for leaf in jax.tree.leaves(result.params):
        assert bool(jnp.all(jnp.isfinite(leaf)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=arrays(2),
    t=arrays(2),
    batch_size=st.one_of(st.integers(-1, 5), st.floats(0, 3), junk),
)
def test_fit_gives_clean_error_or_finite_result(x, t, batch_size):
    state = init_state(NETWORK, OPTIMIZER, PARAMS, key=0)
    try:
        result = fit(NETWORK, state, x, t, OPTIMIZER, 2, batch_size=batch_size)
    except ValidationError as error:
        assert str(error)
        assert "\n" not in str(error)
        return
    except DivergenceError as error:
        for leaf in jax.tree.leaves(error.result.state.params):
            assert bool(jnp.all(jnp.isfinite(leaf)))
        return
    assert _finite_or_reported(result.history.train_loss, result.diverged)


@pytest.mark.parametrize(
    ("x", "t"),
    [
        ([[1e30, -1e30]], [[0.0, 1.0]]),
        ([[3.4e38, 3.4e38]], [[1.0, 1.0]]),
        ([[1.0, 2.0]], [[1e30, -1e30]]),
    ],
    ids=["huge-inputs", "max-float32", "huge-targets"],
)
def test_huge_values_never_leave_nan_params(x, t):
    result = train(NETWORK, PARAMS, x, t, optax.sgd(10.0), 5)
    for leaf in jax.tree.leaves(result.params):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    first = int(result.diverged_at)
    if first >= 0:
        assert not math.isfinite(float(result.losses[first]))
