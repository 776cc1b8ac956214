"""Gradients three ways: the explicit chain rule, ``jax.grad`` and finite differences.

Everything runs in float64. The central difference for parameter ``i`` is

    g_i = (E(theta + h_i e_i) - E(theta - h_i e_i)) / (2 h_i),
    h_i = u^(1/3) * max(1, |theta_i|),   u = 2^-52 (float64 machine epsilon),

the step that balances truncation error (of order h^2) against rounding error (of
order u E / h). Two gradients of one entry agree when

    |a - b| <= atol_i + rtol * max(|a|, |b|).

For finite differences, ``atol_i = FD_ROUNDING * u * max(|E(theta +- h_i e_i)|) /
h_i``: the rounding error of the two loss values divided by the step, below which
a difference quotient cannot resolve a gradient. A saturated unit, whose true
gradient is far smaller than that, therefore passes on the absolute term. The
relative term ``FD_RTOL`` covers the truncation error. The chain rule and
``jax.grad`` are both exact up to rounding, so they are held to ``EXACT_RTOL`` and
an absolute floor of ``FD_ROUNDING * u`` times the largest gradient of the network.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jbp.backprop import autodiff_grad, chain_rule_grad, loss_value
from jbp.netfile import NetworkFile
from jbp.network import Network

EPSILON = float(np.finfo(np.float64).eps)
STEP_SCALE = EPSILON ** (1 / 3)
"""The finite-difference step per unit of ``max(1, |theta_i|)``: about 6.06e-6."""
FD_ROUNDING = 100.0
"""Rounding errors, in units of ``u |E|``, allowed for each loss value."""
FD_RTOL = 1e-5
"""Relative tolerance between finite differences and an exact gradient."""
EXACT_RTOL = 1e-9
"""Relative tolerance between the chain rule and ``jax.grad``."""
CHUNK = 256
"""Perturbed parameter vectors evaluated together by the finite differences."""
METHODS = ("chain_rule", "jax_grad", "finite_differences")
PAIRS = (
    ("chain_rule", "jax_grad"),
    ("finite_differences", "jax_grad"),
    ("finite_differences", "chain_rule"),
)


class Comparison(NamedTuple):
    """The agreement of two methods on one layer's weights and bias.

    Attributes:
        layer: the 0-based layer.
        methods: the two methods compared.
        max_abs: the largest absolute difference.
        max_rel: the largest relative difference, ``|a - b| / max(|a|, |b|)``.
        atol: the largest absolute tolerance of the layer's entries.
        rtol: the relative tolerance.
        agree: whether every entry is within its tolerance.
    """

    layer: int
    methods: tuple[str, str]
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    agree: bool


class GradientCheck(NamedTuple):
    """The three gradients and their comparisons.

    Attributes:
        loss: the error ``E`` at the file's parameters.
        gradients: per method, per layer, ``(dE/dw, dE/db)`` as float64 arrays,
            with ``dE/dw`` one row per neuron.
        steps: per layer, the finite-difference steps ``(h for w, h for b)``.
        comparisons: one per layer and pair of methods.
        agree: whether every comparison agrees.
    """

    loss: float
    gradients: dict[str, tuple[tuple[np.ndarray, np.ndarray], ...]]
    steps: tuple[tuple[np.ndarray, np.ndarray], ...]
    comparisons: tuple[Comparison, ...]
    agree: bool


@functools.partial(jax.jit, static_argnums=(0, 1))
def _all_gradients(network: Network, loss: str, params, x, t):
    """Compute E, the chain rule, ``jax.grad`` and the central differences.

    Returns the loss, the three gradients, the steps and the finite differences'
    absolute tolerances, each shaped like ``params``. One compiled function per
    network keeps the check of a small network quick.
    """
    flat, unravel = ravel_pytree(params)
    steps = STEP_SCALE * jnp.maximum(1.0, jnp.abs(flat))

    def loss_at(vector):
        return loss_value(network, unravel(vector), x, t, loss)

    def pair(i):
        plus = loss_at(flat.at[i].add(steps[i]))
        minus = loss_at(flat.at[i].add(-steps[i]))
        return jnp.stack([plus, minus])

    values = jax.lax.map(pair, jnp.arange(flat.size), batch_size=CHUNK)
    # Divide by the step actually taken, which rounding may shift slightly.
    step_taken = (flat + steps) - (flat - steps)
    differences = (values[:, 0] - values[:, 1]) / step_taken
    atol = FD_ROUNDING * EPSILON * jnp.max(jnp.abs(values), axis=1) / steps
    return (
        loss_value(network, params, x, t, loss),
        chain_rule_grad(network, params, x, t, loss),
        autodiff_grad(network, params, x, t, loss),
        unravel(differences),
        unravel(steps),
        unravel(atol),
    )


def _as_numpy(params) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    return tuple(
        (np.asarray(layer.w, np.float64), np.asarray(layer.b, np.float64))
        for layer in params
    )


def _compare(layer, methods, a, b, atol, rtol) -> Comparison:
    a = np.concatenate([np.ravel(a[0]), np.ravel(a[1])])
    b = np.concatenate([np.ravel(b[0]), np.ravel(b[1])])
    atol = np.broadcast_to(atol, a.shape)
    difference = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    relative = np.divide(
        difference, scale, out=np.zeros_like(difference), where=scale > 0
    )
    agree = bool(np.all(difference <= atol + rtol * scale))
    return Comparison(
        layer=layer,
        methods=methods,
        max_abs=float(difference.max()),
        max_rel=float(relative.max()),
        atol=float(atol.max()),
        rtol=rtol,
        agree=agree,
    )


def check_gradients(file: NetworkFile) -> GradientCheck:
    """Compute the gradients of ``file`` three ways and compare them per layer."""
    with jax.enable_x64(True):
        params = file.params(jnp.float64)
        x = jnp.asarray(file.x, jnp.float64)
        t = jnp.asarray(file.t)
        loss, chain, exact, fd, steps, fd_atol = _all_gradients(
            file.network, file.loss, params, x, t
        )
        loss = float(loss)
        chain, exact, fd = _as_numpy(chain), _as_numpy(exact), _as_numpy(fd)
        steps, fd_atol = _as_numpy(steps), _as_numpy(fd_atol)

    gradients = {"chain_rule": chain, "jax_grad": exact, "finite_differences": fd}
    largest = max(float(np.max(np.abs(array))) for layer in exact for array in layer)
    exact_atol = FD_ROUNDING * EPSILON * largest
    comparisons = []
    for layer in range(file.network.num_layers):
        fd_tolerance = np.concatenate(
            [np.ravel(fd_atol[layer][0]), np.ravel(fd_atol[layer][1])]
        )
        for first, second in PAIRS:
            if "finite_differences" in (first, second):
                atol, rtol = fd_tolerance, FD_RTOL
            else:
                atol, rtol = np.asarray(exact_atol), EXACT_RTOL
            comparisons.append(
                _compare(
                    layer,
                    (first, second),
                    gradients[first][layer],
                    gradients[second][layer],
                    atol,
                    rtol,
                )
            )
    return GradientCheck(
        loss=loss,
        gradients=gradients,
        steps=steps,
        comparisons=tuple(comparisons),
        agree=all(c.agree for c in comparisons),
    )
