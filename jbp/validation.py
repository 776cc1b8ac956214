"""Checks at the API boundary, written once and shared by the library and the CLI.

Shapes and dtypes are static under ``jax.jit``, so they are checked even while
tracing. Checks on values (finiteness, label range) need concrete arrays and are
skipped for tracers; the compiled training loop watches finiteness itself.
Every check raises :class:`~jbp.errors.ValidationError` naming the argument, the
expected value and the actual one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jbp.errors import ValidationError

if TYPE_CHECKING:
    from jbp.losses import Loss
    from jbp.network import Network, Params


def describe(network: Network) -> str:
    """Name a network by its sizes, for messages: ``2-2-2``."""
    return "-".join(str(size) for size in network.sizes)


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def as_float_array(name: str, value: Any, dtype: Any = None) -> jax.Array:
    """Convert ``value`` to a floating JAX array, casting integers and bools.

    Raises:
        ValidationError: for ragged lists, strings or complex numbers.
    """
    if isinstance(value, jax.Array) and not _is_concrete(value):
        array = value
    else:
        try:
            array = jnp.asarray(np.asarray(value) if isinstance(value, list) else value)
        except (TypeError, ValueError) as error:
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
    if not jnp.issubdtype(array.dtype, jnp.floating):
        # Integer features such as pixel counts are meaningful as floats.
        return array.astype(jnp.result_type(float))
    return array


def check_finite(name: str, array: jax.Array) -> None:
    """Raise if a concrete ``array`` holds NaN or infinity, naming the first index."""
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
            actual = tuple(jnp.shape(getattr(layer, field)))
            if actual != expected:
                raise ValidationError(
                    f"params[{i}].{field} has shape {actual}; network "
                    f"{describe(network)} expects {expected} for layer {i}"
                )
            dtype = jnp.asarray(getattr(layer, field)).dtype
            if not jnp.issubdtype(dtype, jnp.floating):
                raise ValidationError(
                    f"params[{i}].{field} has dtype {dtype}; parameters must be "
                    "floating point (float32 or float64)"
                )


def check_inputs(network: Network, x: Any, name: str = "x") -> jax.Array:
    """Return ``x`` as a float array after checking its feature axis and values."""
    x = as_float_array(name, x)
    if x.ndim == 0 or x.shape[-1] != network.in_size:
        raise ValidationError(
            f"{name} has shape {tuple(x.shape)}; network {describe(network)} expects "
            f"(..., {network.in_size}) with {network.in_size} features on the last axis"
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
    raw = jnp.asarray(t) if not isinstance(t, list) else None
    if (
        raw is not None
        and jnp.issubdtype(raw.dtype, jnp.integer)
        and loss.integer_targets
    ):
        if tuple(raw.shape) != batch_shape:
            raise ValidationError(
                f"{name} holds integer class labels of shape {tuple(raw.shape)}; "
                f"expected one label per example, shape {batch_shape}"
            )
        if _is_concrete(raw) and raw.size:
            low, high = int(raw.min()), int(raw.max())
            if low < 0 or high >= network.out_size:
                raise ValidationError(
                    f"{name} holds labels from {low} to {high}, but the output layer "
                    f"has {network.out_size} neurons: labels must lie in "
                    f"0..{network.out_size - 1}"
                )
        return raw
    t = as_float_array(name, t)
    expected = (*batch_shape, network.out_size)
    if tuple(t.shape) != expected:
        raise ValidationError(
            f"{name} has shape {tuple(t.shape)}; expected {expected}: one target per "
            f"output neuron ({network.out_size}) for every example"
        )
    check_finite(name, t)
    return t


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
    """Return ``steps`` as an int, raising unless it is a whole number >= 0."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise ValidationError(f"{name} must be a whole number, got {steps!r}")
    if steps < 0:
        raise ValidationError(f"{name} must be 0 or more, got {steps}")
    return int(steps)


def check_learning_rate(learning_rate: Any, name: str = "learning_rate") -> float:
    """Return ``learning_rate`` as a float, raising unless it is finite and > 0."""
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
