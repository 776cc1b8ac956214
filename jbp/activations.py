"""Activation functions, each beside the backward rule that differentiates it.

The chain-rule engine in :mod:`jbp.backprop` never calls ``jax.grad``: it multiplies
the incoming gradient by each activation's known derivative. Where the derivative can
be written with the output alone, it is, as the classic derivation does it
(``out * (1 - out)`` for the sigmoid), so that no ``exp`` is evaluated twice and none
can overflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jbp.errors import ValidationError

Array = jax.Array


class Activation(NamedTuple):
    """An elementwise (or, for softmax, row-wise) activation and its backward rule.

    Attributes:
        name: the name used in network files and on the command line.
        forward: maps the net input ``net`` to the output ``out``.
        backward: maps ``(net, out, g)``, with ``g = dE/dout``, to ``dE/dnet``.
        derivative: ``dout/dnet`` for an elementwise activation, as a function of
            ``(net, out)``; ``None`` for softmax, whose Jacobian is not diagonal.
        formula: the derivative written for people, used by the derivation text.
    """

    name: str
    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array, Array], Array]
    derivative: Callable[[Array, Array], Array] | None
    formula: str


def _elementwise(
    name: str,
    forward: Callable[[Array], Array],
    derivative: Callable[[Array, Array], Array],
    formula: str,
) -> Activation:
    def backward(net: Array, out: Array, g: Array) -> Array:
        return g * derivative(net, out)

    return Activation(name, forward, backward, derivative, formula)


def _softmax_backward(net: Array, out: Array, g: Array) -> Array:
    # The Jacobian of softmax is diag(out) - out out^T, so its transpose applied
    # to g is out * (g - <g, out>).
    del net
    return out * (g - jnp.sum(g * out, axis=-1, keepdims=True))


def _gelu_derivative(net: Array, out: Array) -> Array:
    # Exact (erf) GELU: d/dx [x Phi(x)] = Phi(x) + x phi(x).
    del out
    cdf = 0.5 * (1.0 + jax.lax.erf(net / math.sqrt(2.0)))
    pdf = jnp.exp(-0.5 * net * net) / math.sqrt(2.0 * math.pi)
    return cdf + net * pdf


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": _elementwise(
        "sigmoid", jax.nn.sigmoid, lambda net, out: out * (1 - out), "out (1 - out)"
    ),
    "tanh": _elementwise("tanh", jnp.tanh, lambda net, out: 1 - out * out, "1 - out^2"),
    "relu": _elementwise(
        "relu",
        jax.nn.relu,
        lambda net, out: (net > 0).astype(out.dtype),
        "1 if net > 0 else 0",
    ),
    "gelu": _elementwise(
        "gelu",
        lambda net: jax.nn.gelu(net, approximate=False),
        _gelu_derivative,
        "Phi(net) + net phi(net)",
    ),
    "identity": _elementwise(
        "identity", lambda net: net, lambda net, out: jnp.ones_like(out), "1"
    ),
    "softmax": Activation(
        "softmax",
        lambda net: jax.nn.softmax(net, axis=-1),
        _softmax_backward,
        None,
        "out_i (delta_ij - out_j)",
    ),
}
"""Every activation jbp provides, by name."""


def get_activation(name: str) -> Activation:
    """Look up an activation by name.

    Raises:
        ValidationError: if the name is unknown; the message lists the known names.
    """
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        known = ", ".join(ACTIVATIONS)
        raise ValidationError(
            f"unknown activation {name!r}; expected one of: {known}"
        ) from None
