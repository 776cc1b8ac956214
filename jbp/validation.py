"""Checks at the API boundary, written once and shared by the library and the CLI.

Shapes, ranks and dtypes are asserted with chex, whose failures become one
:class:`~jbp.errors.ValidationError` line each. They are static under ``jax.jit``,
so they are checked even while tracing. Checks on values (finiteness, label range)
need concrete arrays and are skipped for tracers; inside the compiled loop,
:func:`jbp.train` watches whether the loss and the parameters stay finite.
Every check raises :class:`~jbp.errors.ValidationError` naming the argument, the
expected value and the actual one.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jbp.errors import ValidationError

if TYPE_CHECKING:
    from jbp.losses import Loss
    from jbp.network import Network, Params


MAX_STEPS = 100_000_000
"""The maximum number of steps one call trains, because the loss history keeps one
number per step."""


def whole_number(value: Any, name: str) -> int:
    """Return ``value`` as an int if it is a whole number (Python, NumPy or JAX)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValidationError(f"{name} must be a whole number, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValidationError(f"{name} must be a whole number, got {value!r}") from None


def as_array(value: Any) -> jax.Array:
    """Return ``value`` as a JAX array, without a copy if it already is one."""
    return value if isinstance(value, jax.Array) else jnp.asarray(value)


def cast(array: jax.Array, dtype: Any) -> jax.Array:
    """Return ``array`` in ``dtype``, without an operation if it already is."""
    return array if array.dtype == dtype else array.astype(dtype)


def _passes(assertion: Callable[[], None]) -> bool:
    """Return whether a chex assertion passes."""
    try:
        assertion()
    except AssertionError:
        return False
    return True


def _chex(assertion: Callable[[], None], message: str) -> None:
    """Run a chex assertion and turn its failure into one ValidationError line."""
    if not _passes(assertion):
        raise ValidationError(message)


def describe(network: Network) -> str:
    """Name a network by its sizes, for messages: ``2-2-2``."""
    return "-".join(str(size) for size in network.sizes)


def _is_concrete(value: Any) -> bool:
    # Arrays spread over several processes cannot be read into NumPy here.
    if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
        return value.is_fully_addressable
    return not isinstance(value, jax.core.Tracer)


def as_float_array(
    name: str, value: Any, dtype: Any = None, keep_integers: bool = False
) -> jax.Array:
    """Convert ``value`` to a floating JAX array, casting integers and bools.

    With ``keep_integers``, integer arrays stay integers (class labels).

    Raises:
        ValidationError: for ragged lists, strings or complex numbers.
    """
    if isinstance(value, jax.Array):
        array = value
    else:
        try:
            if isinstance(value, (list, tuple)):
                value = np.asarray(value)
            if isinstance(value, np.ndarray) and value.dtype == object:
                raise ValueError("ragged or mixed entries")
            array = jnp.asarray(value)
        except (TypeError, ValueError, OverflowError) as error:
            raise ValidationError(
                f"{name} must be a rectangular array of numbers, got "
                f"{type(value).__name__} that cannot be read as one ({error})"
            ) from None
    if jnp.issubdtype(array.dtype, jnp.complexfloating) or not (
        jnp.issubdtype(array.dtype, jnp.number) or array.dtype == jnp.bool_
    ):
        raise ValidationError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if dtype is not None:
        return array.astype(dtype)
    if keep_integers and jnp.issubdtype(array.dtype, jnp.integer):
        return array
    if not jnp.issubdtype(array.dtype, jnp.floating):
        # Integer features such as pixel counts are meaningful as floats.
        return array.astype(jnp.result_type(float))
    return array


def check_finite(name: str, array: jax.Array) -> None:
    """Raise if a concrete ``array`` contains NaN or infinity, naming the index."""
    if not _is_concrete(array) or not jnp.issubdtype(array.dtype, jnp.floating):
        return
    bad = ~np.isfinite(np.asarray(array))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        value = np.asarray(array)[index]
        where = f"{name}[{', '.join(map(str, index))}]" if index else name
        raise ValidationError(
            f"{where} is {value}; every value must be finite, so remove or "
            "replace that entry"
        )


def check_params(network: Network, params: Params) -> None:
    """Raise unless ``params`` has one record per layer with the expected shapes."""
    if not isinstance(params, (tuple, list)) or len(params) != network.num_layers:
        got = (
            len(params) if isinstance(params, (tuple, list)) else type(params).__name__
        )
        raise ValidationError(
            f"params must hold one Dense(w, b) per layer: network {describe(network)} "
            f"has {network.num_layers} layers, got {got}"
        )
    for i, layer in enumerate(params):
        if not (hasattr(layer, "w") and hasattr(layer, "b")):
            raise ValidationError(
                f"params[{i}] must be a Dense(w, b) record, got {type(layer).__name__}"
            )
        for field, expected in (
            ("w", network.weight_shape(i)),
            ("b", network.bias_shape(i)),
        ):
            value = as_array(getattr(layer, field))
            _chex(
                lambda value=value, expected=expected: chex.assert_shape(
                    value, expected
                ),
                f"params[{i}].{field} has shape {tuple(value.shape)}; network "
                f"{describe(network)} expects {expected}",
            )
            _chex(
                lambda value=value: chex.assert_type(value, float),
                f"params[{i}].{field} has dtype {value.dtype}; parameters must be "
                "floating point (float32 or float64)",
            )
            check_finite(f"params[{i}].{field}", value)


def check_inputs(network: Network, x: Any, name: str = "x") -> jax.Array:
    """Return ``x`` as a float array after checking its feature axis and values."""
    x = as_float_array(name, x)
    if x.ndim == 0 or not _passes(
        lambda: chex.assert_axis_dimension(x, -1, network.in_size)
    ):
        raise ValidationError(
            f"{name} has shape {tuple(x.shape)}; network {describe(network)} expects "
            f"(..., {network.in_size}) with {network.in_size} features on the last axis"
        )
    if x.size == 0:
        raise ValidationError(
            f"{name} has shape {tuple(x.shape)}, which contains no examples; give at "
            "least one"
        )
    check_finite(name, x)
    return x


def check_targets(
    network: Network, loss: Loss, t: Any, batch_shape: tuple[int, ...], name: str = "t"
) -> jax.Array:
    """Return targets ``t`` checked against the output layer and the loss.

    Integer targets are class labels, accepted only by losses that take them, and
    must lie in ``[0, n_out)``. Other targets must have shape
    ``batch_shape + (n_out,)``.
    """
    raw = as_float_array(name, t, keep_integers=True)
    if jnp.issubdtype(raw.dtype, jnp.integer) and loss.integer_targets:
        if tuple(raw.shape) != batch_shape:
            raise ValidationError(
                f"{name} contains integer class labels of shape {tuple(raw.shape)}; "
                f"expected one label per example, shape {batch_shape}"
            )
        if _is_concrete(raw) and raw.size:
            low, high = int(raw.min()), int(raw.max())
            if low < 0 or high >= network.out_size:
                raise ValidationError(
                    f"{name} contains labels from {low} to {high}, but the output "
                    f"layer has {network.out_size} neurons: labels must lie in "
                    f"0..{network.out_size - 1}"
                )
        return raw
    t = as_float_array(name, raw)
    expected = (*batch_shape, network.out_size)
    if tuple(t.shape) != expected:
        labels = " or integer class labels" if loss.integer_targets else ""
        raise ValidationError(
            f"{name} has shape {tuple(t.shape)}; expected {expected}: one target per "
            f"output neuron ({network.out_size}) for every example{labels}"
        )
    check_finite(name, t)
    _check_target_range(loss, t, name)
    return t


def _check_target_range(loss: Loss, t: jax.Array, name: str) -> None:
    """Raise if the targets of a cross-entropy loss are not probabilities."""
    if not _is_concrete(t) or loss.name not in (
        "binary_cross_entropy",
        "cross_entropy",
    ):
        return
    values = np.asarray(t)
    low, high = float(values.min()), float(values.max())
    if low < 0 or (loss.name == "binary_cross_entropy" and high > 1):
        bound = "between 0 and 1" if loss.name == "binary_cross_entropy" else ">= 0"
        raise ValidationError(
            f"{name} contains values from {low} to {high}; loss {loss.name!r} needs "
            f"probabilities {bound}"
        )
    if loss.name == "cross_entropy":
        sums = values.sum(axis=-1).reshape(-1)
        worst = int(np.abs(sums - 1).argmax())
        if abs(sums[worst] - 1) > 1e-3:
            raise ValidationError(
                f"{name} has a row that sums to {sums[worst]:.6g}; loss "
                "'cross_entropy' needs each target row to sum to 1, or integer "
                "class labels"
            )


def check_loss_fits(network: Network, loss: Loss) -> None:
    """Raise if ``loss`` cannot be used with the network's output activation."""
    output = network.activations[-1]
    if loss.activations and output not in loss.activations:
        allowed = " or ".join(loss.activations)
        raise ValidationError(
            f"loss {loss.name!r} needs a {allowed} output layer, but the output "
            f"activation is {output!r}"
        )


def check_steps(steps: Any, name: str = "steps") -> int:
    """Return ``steps`` as an int, raising unless ``0 <= steps <= MAX_STEPS``."""
    steps = whole_number(steps, name)
    if steps < 0:
        raise ValidationError(f"{name} must be 0 or more, got {steps}")
    if steps > MAX_STEPS:
        raise ValidationError(
            f"{name} is {steps:,}, more than the {MAX_STEPS:,} one call can train "
            "(the loss history keeps one number per step); train in several calls"
        )
    return steps


def check_learning_rate(learning_rate: Any, name: str = "learning_rate") -> float:
    """Return ``learning_rate`` as a float, raising unless it is finite and > 0."""
    if isinstance(learning_rate, (bool, str, np.bool_)):
        raise ValidationError(f"{name} must be a number, got {learning_rate!r}")
    try:
        value = float(learning_rate)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{name} must be a number, got {learning_rate!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(
            f"{name} must be a finite number greater than 0, got {value}"
        )
    return value


def check_batch_size(batch_size: Any, examples: int, name: str = "batch_size") -> int:
    """Return ``batch_size``, raising unless ``1 <= batch_size <= examples``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValidationError(f"{name} must be a whole number, got {batch_size!r}")
    if batch_size < 1:
        raise ValidationError(f"{name} must be at least 1, got {batch_size}")
    if batch_size > examples:
        raise ValidationError(
            f"{name} is {batch_size} but the data has only {examples} examples; "
            f"use a {name} of {examples} or less"
        )
    return int(batch_size)


def check_optimizer(optimizer: Any, name: str = "optimizer") -> None:
    """Raise unless ``optimizer`` is an Optax ``GradientTransformation``."""
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValidationError(
            f"{name} must be an Optax GradientTransformation such as "
            f"optax.sgd(0.5), got {optimizer!r}"
        )


def check_float_dtype(dtype: Any, name: str = "dtype") -> jnp.dtype:
    """Return ``dtype`` if it is a floating dtype JAX can hold now, else raise.

    float64 needs JAX's 64-bit mode; without it JAX would silently use float32.
    """
    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        raise ValidationError(
            f"{name} must be a floating dtype, got {dtype!r}"
        ) from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValidationError(
            f"{name} must be a floating dtype such as float32, got {dtype}"
        )
    if dtype.itemsize == 8 and not jax.config.read("jax_enable_x64"):
        raise ValidationError(
            f"{name} float64 needs JAX's 64-bit mode: run the code inside "
            "`with jax.enable_x64(True):`, or use float32"
        )
    return dtype


def check_key(key: Any, name: str = "key") -> jax.Array:
    """Return ``key`` if it is a JAX PRNG key, else raise naming the fix."""
    is_typed = isinstance(key, jax.Array) and jnp.issubdtype(
        key.dtype, jax.dtypes.prng_key
    )
    is_raw = (
        isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,)
    )
    if not (is_typed or is_raw):
        raise ValidationError(
            f"{name} must be a JAX PRNG key such as jax.random.key(0), got {key!r}"
        )
    return key
