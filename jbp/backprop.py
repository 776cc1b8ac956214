"""Gradients of the pure loss, two ways: ``jax.grad`` and the explicit chain rule.

The chain rule here is the delta rule of the classic derivation. With ``delta_l`` the
error term ``dE/dnet`` of layer ``l`` and ``a_l`` the layer's input:

    delta_L = dE/dnet_L                          (from the loss)
    delta_l = f_l'(net_l) * (delta_{l+1} @ w_{l+1})
    dE/dw_l = delta_l^T a_l,    dE/db_l = sum of delta_l over the batch

Both routes return trees of the same structure as the parameters, and agree to
rounding error; the tests hold them to 1e-12 in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jbp.activations import get_activation
from jbp.losses import get_loss, mean_loss
from jbp.network import Dense, Network, Params, Trace, forward_trace
from jbp.validation import check_loss_fits, check_targets

Array = jax.Array

WeightsFn = Callable[[int, Dense], Array]
"""Maps ``(layer, gradient of that layer)`` to the weights that carry its delta down."""


class Backward(NamedTuple):
    """The result of one chain-rule pass.

    Attributes:
        grads: ``dE/dw`` and ``dE/db`` of every layer, shaped like the parameters.
        deltas: ``dE/dnet`` of every layer, for every example.
        trace: the forward pass the gradients were taken at.
    """

    grads: Params
    deltas: tuple[Array, ...]
    trace: Trace


def loss_value(
    network: Network, params: Params, x: Array, t: Array, loss: str = "half_sse"
) -> Array:
    """Compute the pure loss ``E`` of ``params`` on inputs ``x`` and targets ``t``.

    For the classic network and ``loss="half_sse"`` this is
    ``E = sum_k 1/2 (t_k - out_k)^2``, averaged over the examples of a batch.
    """
    spec = get_loss(loss)
    check_loss_fits(network, spec)
    trace = forward_trace(network, params, x)
    t = check_targets(network, spec, t, tuple(trace.outs[-1].shape[:-1]))
    return mean_loss(spec, trace.nets[-1], trace.outs[-1], t)


def autodiff_grad(
    network: Network, params: Params, x: Array, t: Array, loss: str = "half_sse"
) -> Params:
    """Differentiate :func:`loss_value` with ``jax.grad``."""
    return jax.grad(loss_value, argnums=1)(network, params, x, t, loss)


def backpropagate(
    network: Network,
    params: Params,
    x: Array,
    t: Array,
    loss: str = "half_sse",
    weights_for_delta: WeightsFn | None = None,
) -> Backward:
    """Run the forward pass, then the delta rule from the output layer down.

    Args:
        network: the network description.
        params: one :class:`~jbp.network.Dense` record per layer.
        x: inputs of shape ``(..., n_in)``.
        t: targets of shape ``(..., n_out)``, or integer labels for cross-entropy.
        loss: the name of the loss.
        weights_for_delta: which weights of layer ``l`` carry ``delta_l`` down to
            layer ``l - 1``. By default the current weights, which gives the true
            gradient. The layer-wise update rule passes the already updated ones.

    Returns:
        The gradients, every layer's delta and the forward trace.
    """
    spec = get_loss(loss)
    check_loss_fits(network, spec)
    trace = forward_trace(network, params, x)
    t = check_targets(network, spec, t, tuple(trace.outs[-1].shape[:-1]))
    top = network.num_layers - 1
    examples = max(1, jnp.size(trace.outs[-1]) // network.out_size)

    output_activation = get_activation(network.activations[top])
    delta = spec.output_delta(trace.nets[top], trace.outs[top], t, output_activation)
    delta = delta / examples

    grads: list[Dense | None] = [None] * network.num_layers
    deltas: list[Array | None] = [None] * network.num_layers
    for layer in range(top, -1, -1):
        a = trace.inputs[layer]
        dw = jnp.einsum("...o,...i->oi", delta, a)
        db = jnp.sum(delta.reshape(-1, delta.shape[-1]), axis=0)
        if network.shared_bias[layer]:
            db = jnp.sum(db)
        grads[layer] = Dense(w=dw, b=db)
        deltas[layer] = delta

        if layer == 0:
            break
        if weights_for_delta is None:
            w = params[layer].w
        else:
            w = weights_for_delta(layer, grads[layer])
        below = get_activation(network.activations[layer - 1])
        delta = below.backward(trace.nets[layer - 1], trace.outs[layer - 1], delta @ w)

    return Backward(tuple(grads), tuple(deltas), trace)


def chain_rule_grad(
    network: Network, params: Params, x: Array, t: Array, loss: str = "half_sse"
) -> Params:
    """Differentiate the loss by the explicit chain rule, without ``jax.grad``."""
    return backpropagate(network, params, x, t, loss).grads
