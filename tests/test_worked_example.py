"""The worked example's figures, pinned to published values and a second implementation.

The expected numbers are the example's printed figures and their float64
recomputation by hand (12 significant digits), not values read back from jbp.
"""

import chex
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import reference
from jbp import Dense, Network, forward_trace, loss_value, read_network_file, train
from jbp.worked_example import compare, misprint_of, rounds_to

# True values of every figure, recomputed in float64 independently of jbp.
FORWARD = {
    "net_h": (0.3775, 0.3925),
    "out_h": (0.593269992107, 0.596884378260),
    "net_o": (1.105905967, 1.224921404),
    "out_o": (0.751365069552, 0.772928465321),
}
E_BEFORE = 0.298371108760
W_OUTPUT_AFTER_ONE = (
    (0.358916479718, 0.408666186076),
    (0.511301270239, 0.561370121108),
)
W_HIDDEN_AFTER_ONE = (
    (0.149780716133, 0.199561432266),
    (0.249751143632, 0.299502287265),
)
E_AFTER_ONE = {"gradient": 0.291027773694, "layerwise": 0.291027923905}
OUT_AFTER_10K = {
    "gradient": (0.015913620444, 0.984064273515),
    "layerwise": (0.015912196326, 0.984065734486),
}
E_AFTER_10K_GRADIENT = 0.0000351018778
E_HISTORY_LAST_GRADIENT = 3.51085481e-05

pytestmark = pytest.mark.usefixtures("strict_promotion")


@pytest.fixture
def example(x64):
    loaded = read_network_file()
    return loaded, loaded.params(jnp.float64)


def test_forward_pass_matches_example(example):
    loaded, params = example
    trace = forward_trace(loaded.network, params, jnp.asarray(loaded.x))
    chex.assert_trees_all_close(trace.nets[0], jnp.array(FORWARD["net_h"]), atol=1e-12)
    chex.assert_trees_all_close(trace.outs[0], jnp.array(FORWARD["out_h"]), atol=1e-12)
    chex.assert_trees_all_close(trace.nets[1], jnp.array(FORWARD["net_o"]), atol=1e-9)
    chex.assert_trees_all_close(trace.outs[1], jnp.array(FORWARD["out_o"]), atol=1e-12)


def test_total_error_before_training(example):
    loaded, params = example
    value = loss_value(loaded.network, params, loaded.x, loaded.t)
    chex.assert_trees_all_close(value, jnp.float64(E_BEFORE), atol=1e-12)


@pytest.mark.parametrize("rule", ["gradient", "layerwise"])
def test_one_step_weights(example, rule):
    loaded, params = example
    result = train(
        loaded.network, params, loaded.x, loaded.t, optax.sgd(0.5), 1, rule=rule
    )
    chex.assert_trees_all_close(
        result.params[1].w, jnp.array(W_OUTPUT_AFTER_ONE), atol=1e-12
    )
    if rule == "gradient":
        chex.assert_trees_all_close(
            result.params[0].w, jnp.array(W_HIDDEN_AFTER_ONE), atol=1e-12
        )
    else:
        # The layerwise rule moves the hidden weights by a different amount, so the
        # example's printed hidden weights come from the gradient rule.
        assert not np.allclose(result.params[0].w, W_HIDDEN_AFTER_ONE, atol=1e-6)
    hidden, output, _ = reference.run(1, layerwise=rule == "layerwise")
    chex.assert_trees_all_close(result.params[0].w, jnp.array(hidden), atol=1e-15)
    chex.assert_trees_all_close(result.params[1].w, jnp.array(output), atol=1e-15)


@pytest.mark.parametrize("rule", ["gradient", "layerwise"])
def test_error_after_one_step(example, rule):
    loaded, params = example
    result = train(
        loaded.network, params, loaded.x, loaded.t, optax.sgd(0.5), 1, rule=rule
    )
    value = loss_value(loaded.network, result.params, loaded.x, loaded.t)
    chex.assert_trees_all_close(value, jnp.float64(E_AFTER_ONE[rule]), atol=1e-12)


@pytest.mark.parametrize("rule", ["gradient", "layerwise"])
def test_ten_thousand_steps(example, rule):
    loaded, params = example
    result = train(
        loaded.network, params, loaded.x, loaded.t, optax.sgd(0.5), 10_000, rule=rule
    )
    trace = forward_trace(loaded.network, result.params, jnp.asarray(loaded.x))
    chex.assert_trees_all_close(
        trace.outs[-1], jnp.array(OUT_AFTER_10K[rule]), atol=1e-11
    )
    _, _, errors = reference.run(10_000, layerwise=rule == "layerwise")
    chex.assert_trees_all_close(result.losses, jnp.array(errors), rtol=1e-9)
    if rule == "gradient":
        final = loss_value(loaded.network, result.params, loaded.x, loaded.t)
        chex.assert_trees_all_close(final, jnp.float64(E_AFTER_10K_GRADIENT), rtol=1e-8)
        chex.assert_trees_all_close(
            result.losses[-1], jnp.float64(E_HISTORY_LAST_GRADIENT), rtol=1e-8
        )


@pytest.mark.parametrize(
    ("bias", "expected"),
    [("shared", 0.285750887), ("per_neuron", 0.280471447)],
    ids=["shared", "per-neuron"],
)
def test_training_biases_too(x64, bias, expected):
    shared = bias == "shared"
    network = Network((2, 2, 2), ("sigmoid", "sigmoid"), shared_bias=shared)
    b1 = 0.35 if shared else [0.35, 0.35]
    b2 = 0.60 if shared else [0.60, 0.60]
    params = (
        Dense(jnp.array(reference.HIDDEN_W), jnp.array(b1)),
        Dense(jnp.array(reference.OUTPUT_W), jnp.array(b2)),
    )
    x, t = jnp.array(reference.X), jnp.array(reference.T)
    result = train(network, params, x, t, optax.sgd(0.5), 1)
    value = loss_value(network, result.params, x, t)
    assert round(float(value), 9) == expected
    hidden, output, rb1, rb2, _ = reference.step(
        reference.HIDDEN_W, reference.OUTPUT_W, False, b1, b2, train_bias=bias
    )
    expected_error = reference.total_error(hidden, output, rb1, rb2)
    chex.assert_trees_all_close(value, jnp.float64(expected_error), atol=1e-15)


# The figures as the example prints them, and the verdict each must get.
PRINTED_VERDICTS = {
    "gradient": {
        "w6 after one step": "misprint",
        "E after one step": "explained",
        "E after 10,000 steps": "explained",
        "out o1 after 10,000 steps": "explained",
        "out o2 after 10,000 steps": "explained",
    },
    "layerwise": {
        "w6 after one step": "misprint",
        "w1 after one step": "explained",
        "w2 after one step": "explained",
        "w3 after one step": "explained",
        "w4 after one step": "explained",
        "E after 10,000 steps": "explained",
        "out o1 after 10,000 steps": "misprint",
    },
}


@pytest.mark.parametrize("rule", ["gradient", "layerwise"])
def test_compare_verdicts(rule):
    rows = {row.quantity: row for row in compare(rule=rule)}
    assert len(rows) == 21
    for quantity, row in rows.items():
        expected = PRINTED_VERDICTS[rule].get(quantity)
        if row.document is None:
            assert row.verdict == "not printed", quantity
        elif expected is None:
            assert row.verdict == "agrees", quantity
            assert row.agrees, quantity
        else:
            assert row.verdict == expected, quantity
            assert not row.agrees, quantity
            assert row.note, quantity


def test_compare_notes_name_the_cause():
    rows = {row.quantity: row for row in compare(rule="gradient")}
    assert "layerwise rule gives 0.291027924" in rows["E after one step"].note
    assert "entry 9,999" in rows["E after 10,000 steps"].note
    assert "misprint of 0.015912196" in rows["out o1 after 10,000 steps"].note
    assert "misprint of 0.408666186" in rows["w6 after one step"].note


def test_compare_other_step_counts_are_not_compared():
    rows = compare(rule="gradient", steps=5)
    late = [row for row in rows if "after 5 steps" in row.quantity]
    assert len(late) == 3
    assert all(row.document is None for row in late)


@pytest.mark.parametrize(
    ("printed", "value", "expected"),
    [
        ("0.35891648", 0.358916479718, True),
        ("0.35891648", 0.35891649, False),
        ("0.0000351085", 3.51085481e-05, True),
        ("0.0000351085", 3.51018778e-05, False),
    ],
)
def test_rounds_to(printed, value, expected):
    assert rounds_to(printed, value) is expected


@pytest.mark.parametrize(
    ("printed", "value", "expected"),
    [
        ("408666186", 0.408666186076, True),
        ("0.159121960", 0.015912196326, True),
        ("0.159121960", 0.015913620444, False),
        ("0.35891648", 0.358916479718, False),
    ],
)
def test_misprint_of(printed, value, expected):
    assert misprint_of(printed, value) is expected
