"""The network: a static description, immutable parameters and the forward pass.

A :class:`Network` describes the network (layer sizes, activations, bias layout,
which parameters train). It is hashable, so it can be a static argument of ``jax.jit``.
The parameters live apart from it, as a tuple with one :class:`Dense` record per layer.

Weights are stored the way the classic derivation writes them: one row per neuron,
holding the weights into that neuron, so layer ``l`` computes
``net = x @ w.T + b`` with ``w`` of shape ``(n_out, n_in)``.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jbp.activations import ACTIVATIONS, get_activation
from jbp.errors import ValidationError
from jbp.validation import (
    as_float_array,
    check_float_dtype,
    check_inputs,
    check_key,
    check_params,
)

Array = jax.Array


class Dense(NamedTuple):
    """One layer's parameters: weights ``w`` of shape ``(n_out, n_in)`` and bias ``b``.

    ``b`` has shape ``(n_out,)``, or shape ``()`` when one bias is shared by every
    neuron of the layer.
    """

    w: Array
    b: Array


Params = tuple[Dense, ...]


class Trace(NamedTuple):
    """Every layer's input, net input and output from one forward pass.

    ``inputs[l]`` is what layer ``l`` receives, ``nets[l]`` its net input and
    ``outs[l]`` its output, so ``inputs[l + 1] is outs[l]``.
    """

    inputs: tuple[Array, ...]
    nets: tuple[Array, ...]
    outs: tuple[Array, ...]


def _per_layer(value: Any, count: int, name: str) -> tuple[bool, ...]:
    if isinstance(value, (bool, np.bool_)):
        return (bool(value),) * count
    flags = value if isinstance(value, (tuple, list)) else ()
    if len(flags) == count and all(isinstance(v, (bool, np.bool_)) for v in flags):
        return tuple(bool(v) for v in flags)
    raise ValidationError(
        f"{name} must be one bool or {count} bools (one per layer), got {value!r}"
    )


def _sizes(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise ValidationError(
            f"sizes must be a tuple of layer widths such as (2, 2, 2), got {value!r}"
        )
    sizes = []
    for i, size in enumerate(value):
        try:
            if isinstance(size, (bool, np.bool_)):
                raise TypeError
            size = operator.index(size)
        except TypeError:
            raise ValidationError(
                f"sizes[{i}] must be a positive integer, got {size!r}"
            ) from None
        if size < 1:
            raise ValidationError(f"sizes[{i}] must be a positive integer, got {size}")
        sizes.append(size)
    if len(sizes) < 2:
        raise ValidationError(
            "a network needs an input size and at least one layer, "
            f"got sizes={tuple(sizes)!r}; for example sizes=(2, 2, 2)"
        )
    return tuple(sizes)


def _activations(value: Any, layers: int) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (tuple, list)) or len(names) != layers:
        raise ValidationError(
            f"activations needs one name per layer ({layers}), got {value!r}"
        )
    known = ", ".join(ACTIVATIONS)
    for i, name in enumerate(names):
        if not isinstance(name, str) or name not in ACTIVATIONS:
            raise ValidationError(
                f"unknown activation {name!r} for layer {i + 1}; expected one of: "
                f"{known}"
            )
        if name == "softmax" and i != layers - 1:
            raise ValidationError(
                f"softmax is only supported on the output layer (layer {layers}), "
                f"got it on layer {i + 1}"
            )
    return tuple(names)


@dataclasses.dataclass(frozen=True)
class Network:
    """A static, hashable description of a multi-layer perceptron.

    Args:
        sizes: the width of every layer, inputs first: ``(2, 2, 2)`` is the classic
            2-2-2 network.
        activations: one activation name per layer after the inputs.
        shared_bias: whether each layer has one bias shared by all its neurons
            (as in the classic example) rather than one bias per neuron. One bool
            for every layer, or one per layer.
        train_weights: whether the weights of each layer are trained.
        train_biases: whether the biases of each layer are trained.

    Layers are numbered from 1 (the first layer after the inputs) in messages.

    Raises:
        ValidationError: on an empty network, a size that is not a positive integer, an
            unknown activation, a softmax before the output layer, or per-layer flags
            of the wrong length.
    """

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    shared_bias: bool | tuple[bool, ...] = False
    train_weights: bool | tuple[bool, ...] = True
    train_biases: bool | tuple[bool, ...] = True

    def __post_init__(self) -> None:
        sizes = _sizes(self.sizes)
        layers = len(sizes) - 1
        activations = _activations(self.activations, layers)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "activations", activations)
        for field in ("shared_bias", "train_weights", "train_biases"):
            value = _per_layer(getattr(self, field), layers, field)
            object.__setattr__(self, field, value)

    @property
    def num_layers(self) -> int:
        """The number of layers with parameters (the input layer does not count)."""
        return len(self.sizes) - 1

    @property
    def in_size(self) -> int:
        """The number of input features."""
        return self.sizes[0]

    @property
    def out_size(self) -> int:
        """The number of output neurons."""
        return self.sizes[-1]

    def weight_shape(self, layer: int) -> tuple[int, int]:
        """The shape ``(n_out, n_in)`` of layer ``layer``'s weights."""
        return (self.sizes[layer + 1], self.sizes[layer])

    def bias_shape(self, layer: int) -> tuple[int, ...]:
        """The shape of layer ``layer``'s bias: ``()`` if shared, else ``(n_out,)``."""
        return () if self.shared_bias[layer] else (self.sizes[layer + 1],)

    def trainable_mask(self) -> Params:
        """A tree of bools shaped like the parameters: True where a leaf trains."""
        return tuple(
            Dense(w=self.train_weights[i], b=self.train_biases[i])
            for i in range(self.num_layers)
        )


# Weights are stored (n_out, n_in), so fan-in is the last axis and fan-out the one
# before it.
_FAN_AXES = {"in_axis": -1, "out_axis": -2}

INITIALIZERS: dict[str, jax.nn.initializers.Initializer] = {
    "glorot_normal": jax.nn.initializers.glorot_normal(**_FAN_AXES),
    "glorot_uniform": jax.nn.initializers.glorot_uniform(**_FAN_AXES),
    "he_normal": jax.nn.initializers.he_normal(**_FAN_AXES),
    "he_uniform": jax.nn.initializers.he_uniform(**_FAN_AXES),
    "lecun_normal": jax.nn.initializers.lecun_normal(**_FAN_AXES),
    "lecun_uniform": jax.nn.initializers.lecun_uniform(**_FAN_AXES),
    "zeros": jax.nn.initializers.zeros,
}
"""Weight initialisers by name, set up for weights of shape ``(n_out, n_in)``."""


def get_initializer(name: str) -> jax.nn.initializers.Initializer:
    """Look up a weight initialiser by name.

    Raises:
        ValueError: if the name is unknown; the message lists the known names.
    """
    try:
        return INITIALIZERS[name]
    except KeyError:
        known = ", ".join(INITIALIZERS)
        raise ValidationError(
            f"unknown initializer {name!r}; expected one of: {known}"
        ) from None


def default_initializer(activation: str) -> jax.nn.initializers.Initializer:
    """Pick the initialiser that keeps activations' variance steady for ``activation``.

    He (Kaiming) normal for ReLU and GELU, Glorot (Xavier) normal for sigmoid and
    tanh, LeCun normal for identity and softmax outputs.
    """
    if activation in ("relu", "gelu"):
        return INITIALIZERS["he_normal"]
    if activation in ("sigmoid", "tanh"):
        return INITIALIZERS["glorot_normal"]
    return INITIALIZERS["lecun_normal"]


InitializerSpec = jax.nn.initializers.Initializer | str | None


def _layer_initializers(
    network: Network, initializer: InitializerSpec | Sequence[InitializerSpec]
) -> list[jax.nn.initializers.Initializer]:
    if initializer is None or isinstance(initializer, str) or callable(initializer):
        initializer = [initializer] * network.num_layers
    initializer = list(initializer)
    if len(initializer) != network.num_layers:
        raise ValidationError(
            f"initializer needs one entry per layer ({network.num_layers}), got "
            f"{len(initializer)}; or pass a single initializer for every layer"
        )
    chosen = []
    for activation, spec in zip(network.activations, initializer, strict=True):
        if spec is None:
            chosen.append(default_initializer(activation))
        elif isinstance(spec, str):
            chosen.append(get_initializer(spec))
        else:
            chosen.append(spec)
    return chosen


def init_params(
    network: Network,
    key: Array,
    dtype: jnp.dtype = jnp.float32,
    initializer: InitializerSpec | Sequence[InitializerSpec] = None,
) -> Params:
    """Draw random weights and zero biases for ``network``.

    Args:
        network: the network to initialise.
        key: a JAX PRNG key.
        dtype: the floating dtype of every parameter.
        initializer: one initialiser for every layer, or one per layer. Each is a
            ``jax.nn.initializers`` function (which receives the weight shape
            ``(n_out, n_in)``), a name from :data:`INITIALIZERS`, or None for
            :func:`default_initializer` of the layer's activation (the default).

    Returns:
        One :class:`Dense` record per layer.
    """
    dtype = check_float_dtype(dtype)
    keys = jax.random.split(check_key(key), network.num_layers)
    inits = _layer_initializers(network, initializer)
    params = []
    for i, (layer_key, init) in enumerate(zip(keys, inits, strict=True)):
        w = init(layer_key, network.weight_shape(i), dtype)
        b = jnp.zeros(network.bias_shape(i), dtype)
        params.append(Dense(w=w, b=b))
    return tuple(params)


def params_from_lists(
    network: Network, weights: list, biases: list, dtype: jnp.dtype = jnp.float32
) -> Params:
    """Build parameters from nested lists, one weight row per neuron.

    Args:
        network: the network the parameters belong to.
        weights: per layer, a list of rows; row ``j`` holds the weights into neuron j.
        biases: per layer, one number (a shared bias) or one number per neuron.
        dtype: the floating dtype of every parameter.

    Returns:
        One :class:`Dense` record per layer, checked against ``network``.
    """
    dtype = check_float_dtype(dtype)
    if len(weights) != network.num_layers or len(biases) != network.num_layers:
        raise ValidationError(
            f"weights and biases need one entry per layer ({network.num_layers}), "
            f"got {len(weights)} and {len(biases)}"
        )
    params = tuple(
        Dense(
            w=as_float_array(f"weights[{i}]", w, dtype),
            b=as_float_array(f"biases[{i}]", b, dtype),
        )
        for i, (w, b) in enumerate(zip(weights, biases, strict=True))
    )
    check_params(network, params)
    return params


def forward_trace(network: Network, params: Params, x: Array) -> Trace:
    """Run the forward pass and keep every layer's net input and output.

    Args:
        network: the network description.
        params: one :class:`Dense` record per layer.
        x: inputs of shape ``(..., n_in)``; leading axes are batch axes.

    Returns:
        A :class:`Trace` of every layer's input, net input and output.
    """
    check_params(network, params)
    x = check_inputs(network, x)
    inputs, nets, outs = [], [], []
    h = x
    for name, layer in zip(network.activations, params, strict=True):
        net = h @ layer.w.T + layer.b
        out = get_activation(name).forward(net)
        inputs.append(h)
        nets.append(net)
        outs.append(out)
        h = out
    return Trace(tuple(inputs), tuple(nets), tuple(outs))


def forward(network: Network, params: Params, x: Array) -> Array:
    """Map inputs ``x`` of shape ``(..., n_in)`` to outputs ``(..., n_out)``."""
    return forward_trace(network, params, x).outs[-1]
