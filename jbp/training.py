"""Full-batch training: N steps of any Optax optimiser in one compiled ``lax.scan``.

Two update rules are offered:

- ``gradient``: true gradient descent. The gradient of the pure loss is taken with
  ``jax.value_and_grad`` at the current parameters and handed to the optimiser.
- ``layerwise``: the output layer is updated first, and each lower layer's delta is
  carried down through the already updated weights of the layer above. This is the
  rule behind the classic worked example's figures after the first step. For
  optimisers that update each leaf on its own (SGD, momentum, Adam) the look-ahead
  weights are exactly those the step then applies. For optimisers that couple leaves
  (global-norm clipping) they use that layer's gradient alone.

Frozen parameters are routed to ``optax.set_to_zero`` by ``optax.transforms.partition``,
so they never move, and the wrapped optimiser never receives them.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jbp.backprop import backpropagate, loss_value
from jbp.errors import ValidationError
from jbp.losses import get_loss
from jbp.network import Dense, Network, Params
from jbp.validation import (
    as_array,
    cast,
    check_inputs,
    check_loss_fits,
    check_optimizer,
    check_params,
    check_steps,
    check_targets,
)

Array = jax.Array

RULES = ("gradient", "layerwise")
"""The update rules :func:`train` accepts."""


class TrainResult(NamedTuple):
    """The result of :func:`train`.

    Attributes:
        params: the parameters after the last step, or the last finite ones if
            training diverged.
        opt_state: the optimiser state that goes with ``params``.
        losses: the loss of every step, measured in that step's forward pass, before
            its update: ``losses[0]`` is the loss of the initial parameters.
        diverged_at: the first step whose loss or updated parameters were not
            finite, or -1 if every step stayed finite. ``params`` and ``opt_state``
            are then those from before that step; ``losses`` keeps every step's
            value, non-finite ones included.
    """

    params: Params
    opt_state: optax.OptState
    losses: Array
    diverged_at: Array


def with_frozen(
    network: Network, optimizer: optax.GradientTransformation
) -> optax.GradientTransformation:
    """Wrap ``optimizer`` so that the parameters the network freezes never move.

    Returns ``optimizer`` itself when every parameter trains.
    """
    mask = network.trainable_mask()
    if all(jax.tree.leaves(mask)):
        return optimizer
    labels = jax.tree.map(lambda trains: "train" if trains else "frozen", mask)
    return optax.transforms.partition(
        {"train": optimizer, "frozen": optax.set_to_zero()}, labels
    )


def init_opt_state(
    network: Network, optimizer: optax.GradientTransformation, params: Params
) -> optax.OptState:
    """Initialise the state of ``optimizer`` as :func:`train` wraps it."""
    return with_frozen(network, optimizer).init(params)


def check_rule(rule: Any) -> str:
    """Return ``rule`` if it is one of :data:`RULES`, else raise."""
    if rule not in RULES:
        raise ValidationError(
            f"unknown update rule {rule!r}; expected one of: {', '.join(RULES)}"
        )
    return rule


def _layerwise_grads(
    network: Network,
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    x: Array,
    t: Array,
    loss: str,
) -> tuple[Array, Params]:
    def updated_weights(layer: int, grad: Dense) -> Array:
        # Only this layer's gradient is non-zero, so the update of its weights is
        # what the full step will apply to them for a leaf-wise optimiser.
        alone = tuple(
            grad if i == layer else jax.tree.map(jnp.zeros_like, p)
            for i, p in enumerate(params)
        )
        updates, _ = optimizer.update(alone, opt_state, params)
        return params[layer].w + updates[layer].w

    backward = backpropagate(network, params, x, t, loss, updated_weights)
    value = loss_value(network, params, x, t, loss)
    return value, backward.grads


def make_step(
    network: Network,
    optimizer: optax.GradientTransformation,
    loss: str = "half_sse",
    rule: str = "gradient",
):
    """Build a pure step ``(params, opt_state, x, t) -> (params, opt_state, E)``.

    ``optimizer`` is used as given; wrap it with :func:`with_frozen` first to freeze
    parameters. ``E`` is the loss before the update.
    """
    check_rule(rule)

    def step(params: Params, opt_state: optax.OptState, x: Array, t: Array):
        if rule == "gradient":
            value, grads = jax.value_and_grad(loss_value, argnums=1)(
                network, params, x, t, loss
            )
        else:
            value, grads = _layerwise_grads(
                network, optimizer, params, opt_state, x, t, loss
            )

        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, value

    return step


@functools.lru_cache(maxsize=64)
def _state_structure(network, optimizer, params_structure):
    """Return the tree structure of a fresh optimiser state, without computing one."""
    shapes = [
        jax.ShapeDtypeStruct(network.weight_shape(i), jnp.float32)
        if j == 0
        else jax.ShapeDtypeStruct(network.bias_shape(i), jnp.float32)
        for i in range(network.num_layers)
        for j in range(2)
    ]
    params = jax.tree.unflatten(params_structure, shapes)
    return jax.tree.structure(
        jax.eval_shape(with_frozen(network, optimizer).init, params)
    )


def all_finite(value: Array, tree: Any) -> Array:
    """Return whether ``value`` and every leaf of ``tree`` are all finite."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack([jnp.isfinite(value), *leaves]))


@functools.partial(
    jax.jit,
    static_argnames=("network", "optimizer", "loss", "rule", "steps", "watch_finite"),
)
def _train_scan(
    network, optimizer, loss, rule, steps, watch_finite, params, opt_state, x, t
):
    wrapped = with_frozen(network, optimizer)
    step = make_step(network, wrapped, loss, rule)
    if opt_state is None:
        opt_state = wrapped.init(params)

    def body(carry, index):
        params, opt_state, diverged_at = carry
        params, opt_state, value = step(params, opt_state, x, t)
        if watch_finite:
            # Only the flag is carried: selecting between old and new parameters
            # at every step made this loop about ten times slower on the worked
            # example (XLA:CPU, jax 0.10.2), so train() replays the steps before
            # a blow-up instead.
            first = (diverged_at < 0) & ~all_finite(value, params)
            diverged_at = jnp.where(first, index, diverged_at)
        return (params, opt_state, diverged_at), value

    start = (params, opt_state, jnp.int32(-1))
    (params, opt_state, diverged_at), losses = jax.lax.scan(
        body, start, jnp.arange(steps, dtype=jnp.int32)
    )
    return TrainResult(params, opt_state, losses, diverged_at)


def train(
    network: Network,
    params: Params,
    x: Any,
    t: Any,
    optimizer: optax.GradientTransformation,
    steps: int,
    *,
    loss: str = "half_sse",
    rule: str = "gradient",
    opt_state: optax.OptState | None = None,
    watch_finite: bool = True,
) -> TrainResult:
    """Train on one fixed batch for ``steps`` steps in a compiled ``lax.scan``.

    Args:
        network: the network description (static: a new one compiles anew).
        params: the starting parameters.
        x: inputs of shape ``(..., n_in)``.
        t: targets of shape ``(..., n_out)``, or integer labels for cross-entropy.
        optimizer: any Optax ``GradientTransformation``, for example
            ``optax.sgd(0.5)``. Reuse one object across calls: a new object compiles
            anew. Use ``optax.inject_hyperparams`` to change the learning rate
            without recompiling.
        steps: how many updates to apply.
        loss: the name of the loss.
        rule: ``"gradient"`` or ``"layerwise"`` (see the module docstring).
        opt_state: the state to continue from; by default a fresh
            :func:`init_opt_state`.
        watch_finite: carry a flag through the loop that records the first step
            whose loss or parameters are not finite (``TrainResult.diverged_at``),
            and return the parameters from before that step. Turn it off only to
            measure its cost.

    Returns:
        The final parameters, optimiser state and per-step loss history.

    Raises:
        ValidationError: if the parameters, data, loss, rule or step count do not
            fit the network.

    Example:
        >>> import jax, optax
        >>> from jbp import Network, init_params, train
        >>> net = Network(sizes=(2, 3, 1), activations=("tanh", "sigmoid"))
        >>> params = init_params(net, jax.random.key(0))
        >>> result = train(net, params, [[0.0, 1.0]], [[1.0]], optax.sgd(0.5), 20)
        >>> bool(result.losses[-1] < result.losses[0])
        True
    """
    check_rule(rule)
    check_optimizer(optimizer)
    steps = check_steps(steps)
    spec = get_loss(loss)
    check_loss_fits(network, spec)
    check_params(network, params)
    dtype = jnp.result_type(*jax.tree.leaves(params))
    x = cast(check_inputs(network, x), dtype)
    t = check_targets(network, spec, t, tuple(x.shape[:-1]))
    if jnp.issubdtype(t.dtype, jnp.floating):
        t = cast(t, dtype)
    params = tuple(Dense(as_array(p.w), as_array(p.b)) for p in params)
    if opt_state is not None and jax.tree.structure(opt_state) != _state_structure(
        network, optimizer, jax.tree.structure(params)
    ):
        raise ValidationError(
            "opt_state does not match the optimizer: pass the state returned by "
            "init_opt_state(network, optimizer, params) or by the previous train call "
            "with the same optimizer"
        )
    result = _train_scan(
        network,
        optimizer,
        loss,
        rule,
        steps,
        bool(watch_finite),
        params,
        opt_state,
        x,
        t,
    )
    first = int(result.diverged_at) if watch_finite else -1
    if first < 0:
        return result

    # Replay the steps before the first non-finite one to recover the last finite
    # parameters and optimiser state. The steps are deterministic, so this costs
    # time only when training has diverged.
    replay = _train_scan(
        network, optimizer, loss, rule, first, False, params, opt_state, x, t
    )
    return result._replace(params=replay.params, opt_state=replay.opt_state)
