"""The compiled training loops the benchmark times, built from jbp's public step."""

from __future__ import annotations

import functools

import jax
import optax

import jbp


@functools.cache
def sgd(rate: float) -> optax.GradientTransformation:
    """Return one ``optax.sgd`` object per rate.

    ``jax.jit`` compiles anew for every new optimiser object passed as a static
    argument, so sharing one lets separate runs reuse a compilation.
    """
    return optax.sgd(rate)


@functools.cache
def fixed_batch_loop(
    network: jbp.Network,
    optimizer: optax.GradientTransformation,
    loss: str,
    unroll: int = 1,
):
    """Jit the program ``jbp.train`` runs: a ``lax.scan`` of steps on one batch.

    Cached, so that equal arguments share one jitted function and its compilations.

    ``unroll`` is passed to ``lax.scan``; ``jbp.train`` uses 1.

    Returns:
        ``loop(params, opt_state, x, t, steps) -> (params, losses)`` with ``steps``
        static, and the optimiser wrapped by ``jbp.with_frozen`` as ``jbp.train``
        wraps it, whose ``init`` gives the state.
    """
    wrapped = jbp.with_frozen(network, optimizer)
    step = jbp.make_step(network, wrapped, loss)

    @functools.partial(jax.jit, static_argnames="steps")
    def loop(params, opt_state, x, t, steps):
        def body(carry, _):
            params, opt_state = carry
            params, opt_state, value = step(params, opt_state, x, t)
            return (params, opt_state), value

        (params, _), losses = jax.lax.scan(
            body, (params, opt_state), None, length=steps, unroll=unroll
        )
        return params, losses

    return loop, wrapped


@functools.cache
def scan_over_batches(
    network: jbp.Network, optimizer: optax.GradientTransformation, loss: str
):
    """Jit a ``lax.scan`` of ``jbp.make_step`` whose step ``i`` uses batch ``i``.

    Cached, so that equal arguments share one jitted function and its compilations.

    Returns:
        ``loop(params, opt_state, xs, ts) -> (params, opt_state, losses)``.
    """
    step = jbp.make_step(network, optimizer, loss)

    @jax.jit
    def loop(params, opt_state, xs, ts):
        def body(carry, batch):
            params, opt_state = carry
            params, opt_state, value = step(params, opt_state, *batch)
            return (params, opt_state), value

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (xs, ts))
        return params, opt_state, losses

    return loop
