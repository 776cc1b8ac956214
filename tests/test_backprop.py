"""The explicit chain rule against jax.grad and central finite differences."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jbp import (
    Network,
    autodiff_grad,
    backpropagate,
    chain_rule_grad,
    init_params,
    loss_value,
)

HIDDEN = ["sigmoid", "tanh", "relu", "gelu", "identity"]
OUTPUT_LOSSES = {
    "sigmoid": ["half_sse", "mse", "binary_cross_entropy"],
    "tanh": ["half_sse", "mse"],
    "identity": ["half_sse", "mse", "cross_entropy", "binary_cross_entropy"],
    "softmax": ["half_sse", "cross_entropy"],
    "relu": ["half_sse"],
    "gelu": ["mse"],
}

pytestmark = pytest.mark.usefixtures("strict_promotion")


@st.composite
def problems(draw):
    depth = draw(st.integers(1, 5))
    sizes = tuple(
        draw(st.lists(st.integers(1, 5), min_size=depth + 1, max_size=depth + 1))
    )
    output = draw(st.sampled_from(sorted(OUTPUT_LOSSES)))
    if output == "softmax" and sizes[-1] == 1:
        sizes = (*sizes[:-1], 2)
    activations = (
        *draw(
            st.lists(st.sampled_from(HIDDEN), min_size=depth - 1, max_size=depth - 1)
        ),
        output,
    )
    shared = tuple(draw(st.lists(st.booleans(), min_size=depth, max_size=depth)))
    loss = draw(st.sampled_from(OUTPUT_LOSSES[output]))
    batch = draw(st.sampled_from([(), (1,), (3,), (2, 2)]))
    seed = draw(st.integers(0, 2**31 - 1))
    return Network(sizes, activations, shared_bias=shared), loss, batch, seed


def make_data(network, loss, batch, seed):
    key_p, key_x, key_t, key_b = jax.random.split(jax.random.key(seed), 4)
    params = init_params(network, key_p, jnp.float64)
    # Non-zero biases, so that the bias gradients are exercised away from zero.
    params = tuple(
        p._replace(b=0.1 * jax.random.normal(k, p.b.shape, jnp.float64))
        for p, k in zip(params, jax.random.split(key_b, len(params)), strict=True)
    )
    x = jax.random.normal(key_x, (*batch, network.in_size), jnp.float64)
    if loss == "cross_entropy":
        t = jax.random.randint(key_t, batch, 0, network.out_size)
    elif loss == "binary_cross_entropy":
        t = jax.random.uniform(key_t, (*batch, network.out_size), jnp.float64)
    else:
        t = jax.random.normal(key_t, (*batch, network.out_size), jnp.float64)
    return params, x, t


@settings(max_examples=30, deadline=None)
@given(problems())
def test_chain_rule_equals_jax_grad(problem):
    network, loss, batch, seed = problem
    with jax.enable_x64(True):
        params, x, t = make_data(network, loss, batch, seed)
        # One compiled program per network is quicker than op-by-op dispatch.
        both = jax.jit(
            lambda p, x, t: (
                autodiff_grad(network, p, x, t, loss),
                chain_rule_grad(network, p, x, t, loss),
            )
        )
        expected, actual = both(params, x, t)
        chex.assert_trees_all_equal_structs(actual, expected)
        chex.assert_trees_all_equal_shapes_and_dtypes(actual, expected)
        chex.assert_trees_all_close(actual, expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("loss", ["half_sse", "cross_entropy"])
def test_chain_rule_equals_finite_differences(x64, loss):
    output = "sigmoid" if loss == "half_sse" else "softmax"
    network = Network((3, 4, 2), ("tanh", output))
    params, x, t = make_data(network, loss, (2,), seed=7)
    grads = chain_rule_grad(network, params, x, t, loss)
    leaves, treedef = jax.tree.flatten(params)
    step = 1e-6

    def shifted(index, k, delta):
        moved = np.array(leaves[index])
        moved.reshape(-1)[k] += delta
        new = list(leaves)
        new[index] = jnp.asarray(moved)
        return float(loss_value(network, jax.tree.unflatten(treedef, new), x, t, loss))

    for index, leaf in enumerate(leaves):
        for k in range(leaf.size):
            numeric = (shifted(index, k, step) - shifted(index, k, -step)) / (2 * step)
            analytic = float(np.asarray(jax.tree.leaves(grads)[index]).reshape(-1)[k])
            assert abs(numeric - analytic) < 1e-8, (index, k)


def test_backpropagate_returns_deltas_per_layer(x64):
    network = Network((2, 3, 2), ("sigmoid", "sigmoid"))
    params, x, t = make_data(network, "half_sse", (4,), seed=1)
    backward = backpropagate(network, params, x, t)
    chex.assert_shape(backward.deltas, [(4, 3), (4, 2)])
    # dE/db of a per-neuron bias is the delta summed over the batch.
    chex.assert_trees_all_close(backward.grads[1].b, backward.deltas[1].sum(axis=0))


def test_sigmoid_backward_never_overflows():
    network = Network((1, 1), ("sigmoid",))
    params = init_params(network, jax.random.key(0))
    params = (params[0]._replace(w=jnp.full((1, 1), 1000.0)),)
    x = jnp.array([[-1000.0]])
    t = jnp.array([[1.0]])
    grads = chain_rule_grad(network, params, x, t)
    chex.assert_tree_all_finite(grads)
