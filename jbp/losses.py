"""Pure loss functions, each with the error term that starts the backward pass.

Every loss is computed per example and averaged over the batch, so a batch of one
example gives the classic per-example error. The cross-entropy losses read the last
layer's net input as logits and use stable log-softmax and log-sigmoid forms, so they
stay finite for finite logits of any size, and a logit of -inf marks an excluded class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jbp.activations import Activation
from jbp.errors import ValidationError

Array = jax.Array


class Loss(NamedTuple):
    """A loss and the derivative that seeds the chain rule.

    Attributes:
        name: the name used in network files and on the command line.
        per_example: maps ``(net, out, t)`` of the output layer to the loss of each
            example (shape: the batch shape).
        output_delta: maps ``(net, out, t, activation)`` to ``dE/dnet`` of the output
            layer for each example, without the ``1/batch`` of the mean.
        activations: the output activations the loss accepts; empty means any.
        integer_targets: whether targets may be integer class labels.
        formula: the per-example loss written for people.
    """

    name: str
    per_example: Callable[[Array, Array, Array], Array]
    output_delta: Callable[[Array, Array, Array, Activation], Array]
    activations: tuple[str, ...]
    integer_targets: bool
    formula: str


def _half_sse(net: Array, out: Array, t: Array) -> Array:
    del net
    return jnp.sum(optax.l2_loss(out, t), axis=-1)


def _half_sse_delta(net: Array, out: Array, t: Array, act: Activation) -> Array:
    return act.backward(net, out, out - t)


def _mse(net: Array, out: Array, t: Array) -> Array:
    del net
    return jnp.mean(optax.squared_error(out, t), axis=-1)


def _mse_delta(net: Array, out: Array, t: Array, act: Activation) -> Array:
    return act.backward(net, out, 2.0 * (out - t) / out.shape[-1])


def _as_distribution(t: Array, classes: int, dtype: jnp.dtype) -> Array:
    if jnp.issubdtype(t.dtype, jnp.integer):
        return jax.nn.one_hot(t, classes, dtype=dtype)
    return t.astype(dtype)


def _cross_entropy(net: Array, out: Array, t: Array) -> Array:
    del out
    if jnp.issubdtype(t.dtype, jnp.integer):
        return optax.softmax_cross_entropy_with_integer_labels(net, t)
    # The safe form drops 0 * log(0) terms, so a logit of -inf marks an excluded
    # class instead of turning the loss into NaN.
    return optax.safe_softmax_cross_entropy(net, t)


def _cross_entropy_delta(net: Array, out: Array, t: Array, act: Activation) -> Array:
    # d/dnet of -sum_k t_k log softmax(net)_k is softmax(net) * sum_k t_k - t, which
    # is the familiar softmax(net) - t when the target row sums to 1.
    del out, act
    probabilities = jax.nn.softmax(net, axis=-1)
    t = _as_distribution(t, net.shape[-1], net.dtype)
    return probabilities * jnp.sum(t, axis=-1, keepdims=True) - t


def _binary_cross_entropy(net: Array, out: Array, t: Array) -> Array:
    # optax.sigmoid_binary_cross_entropy (0.2.8) computes 0 * log(0) = NaN for an
    # infinite logit, so the terms whose weight is zero are dropped explicitly.
    del out
    positive = jnp.where(t > 0, t * jax.nn.log_sigmoid(net), 0.0)
    negative = jnp.where(t < 1, (1 - t) * jax.nn.log_sigmoid(-net), 0.0)
    return -jnp.sum(positive + negative, axis=-1)


def _binary_cross_entropy_delta(
    net: Array, out: Array, t: Array, act: Activation
) -> Array:
    del out, act
    return jax.nn.sigmoid(net) - t


LOSSES: dict[str, Loss] = {
    "half_sse": Loss(
        "half_sse", _half_sse, _half_sse_delta, (), False, "sum_k 1/2 (t_k - out_k)^2"
    ),
    "mse": Loss("mse", _mse, _mse_delta, (), False, "mean_k (t_k - out_k)^2"),
    "cross_entropy": Loss(
        "cross_entropy",
        _cross_entropy,
        _cross_entropy_delta,
        ("softmax", "identity"),
        True,
        "-sum_k t_k log softmax(net)_k",
    ),
    "binary_cross_entropy": Loss(
        "binary_cross_entropy",
        _binary_cross_entropy,
        _binary_cross_entropy_delta,
        ("sigmoid", "identity"),
        False,
        "-sum_k [t_k log sigmoid(net_k) + (1 - t_k) log(1 - sigmoid(net_k))]",
    ),
}
"""Every loss jbp provides, by name."""


def get_loss(name: str) -> Loss:
    """Look up a loss by name.

    Raises:
        ValidationError: if the name is unknown; the message lists the known names.
    """
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        known = ", ".join(LOSSES)
        raise ValidationError(
            f"unknown loss {name!r}; expected one of: {known}"
        ) from None


def mean_loss(loss: Loss, net: Array, out: Array, t: Array) -> Array:
    """Average ``loss`` over every example: ``E = mean_n E_n``."""
    return jnp.mean(loss.per_example(net, out, t))
