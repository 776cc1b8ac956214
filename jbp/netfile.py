"""Network files: a small network written by hand, as JSON or TOML.

A file holds the layers (weights as one row per neuron, with the weights into that
neuron), a bias per neuron or one shared by the layer, an activation per layer, the
inputs ``x`` and targets ``t`` (one example or a batch), the loss, the learning rate,
which parameters train, and optional names for inputs, neurons, weights and biases.
The classic worked example ships as ``jbp/networks/worked_example.json``::

    {"layers": [{"activation": "sigmoid", "weights": [[0.15, 0.20], [0.25, 0.30]],
                 "bias": 0.35, "train": {"weights": true, "bias": false}}, ...],
     "x": [0.05, 0.10], "t": [0.01, 0.99], "loss": "half_sse", "learning_rate": 0.5}

Every problem raises :class:`~jbp.errors.ValidationError` with one line that names
the file and the place in it.
"""

from __future__ import annotations

import json
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jbp.activations import ACTIVATIONS
from jbp.errors import ValidationError
from jbp.losses import LOSSES
from jbp.network import Dense, Network, Params
from jbp.validation import check_learning_rate

WORKED_EXAMPLE = "worked_example.json"


class Names(NamedTuple):
    """Human names for the parts of a network, used by the derivation text.

    Attributes:
        inputs: one name per input feature (``x1``, ``x2``).
        neurons: per layer, one name per neuron (``h1``, ``o1``).
        weights: per layer, one row of names per neuron (``w1``, ``w2``).
        biases: per layer, one name if the bias is shared, else one per neuron.
    """

    inputs: tuple[str, ...]
    neurons: tuple[tuple[str, ...], ...]
    weights: tuple[tuple[tuple[str, ...], ...], ...]
    biases: tuple[str | tuple[str, ...], ...]


class NetworkFile(NamedTuple):
    """A parsed network file. Arrays are NumPy float64 until :meth:`params` casts them.

    Attributes:
        network: the static network description.
        weights: per layer, the ``(n_out, n_in)`` weight matrix.
        biases: per layer, the bias (shape ``()`` if shared, else ``(n_out,)``).
        x: the inputs, shape ``(n_in,)`` or ``(batch, n_in)``.
        t: the targets, shape ``(n_out,)``, ``(batch, n_out)`` or integer labels.
        loss: the loss name.
        learning_rate: the SGD step size.
        names: human names for every part.
        description: free text from the file.
        source: where the file came from, for messages.
    """

    network: Network
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    x: np.ndarray
    t: np.ndarray
    loss: str
    learning_rate: float
    names: Names
    description: str
    source: str

    def params(self, dtype: Any = jnp.float64) -> Params:
        """The parameters as JAX arrays of ``dtype`` (float64 needs x64 enabled)."""
        return tuple(
            Dense(w=jnp.asarray(w, dtype), b=jnp.asarray(b, dtype))
            for w, b in zip(self.weights, self.biases, strict=True)
        )


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{where} must be a number, got {json.dumps(value)}")
    if not math.isfinite(value):
        raise ValidationError(f"{where} is {value}; every number must be finite")
    return float(value)


def _vector(value: Any, where: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise ValidationError(
            f"{where} must be a non-empty list of numbers, got {json.dumps(value)}"
        )
    return [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _matrix(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise ValidationError(
            f"{where} must be a non-empty list of rows, got {json.dumps(value)}"
        )
    rows = [_vector(row, f"{where}[{i}]") for i, row in enumerate(value)]
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValidationError(
                f"{where} is ragged: row 0 has {width} numbers but row {i} has "
                f"{len(row)}"
            )
    return np.asarray(rows, dtype=np.float64)


def _examples(value: Any, width: int, where: str, what: str) -> np.ndarray:
    """Read one example (a list) or a batch (a list of lists) of ``width`` numbers."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        array = _matrix(value, where)
    else:
        array = np.asarray(_vector(value, where), dtype=np.float64)
    if array.shape[-1] != width:
        raise ValidationError(
            f"{where} has {array.shape[-1]} numbers per example, but the {what} has "
            f"{width}; give {width}"
        )
    return array


def _labels(value: Any, classes: int, batch: tuple[int, ...], where: str) -> np.ndarray:
    labels = value if isinstance(value, list) else [value]
    for i, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, int):
            raise ValidationError(f"{where}[{i}] must be a class label, got {label!r}")
        if not 0 <= label < classes:
            raise ValidationError(
                f"{where}[{i}] is class {label}, but the output layer has {classes} "
                f"neurons: labels must lie in 0..{classes - 1}"
            )
    array = np.asarray(labels, dtype=np.int32).reshape(-1)
    if not isinstance(value, list):
        array = array.reshape(())
    if array.shape != batch:
        raise ValidationError(
            f"{where} has {array.size} labels; expected one per example "
            f"({int(np.prod(batch))})"
        )
    return array


def _names(value: Any, count: int, default: list[str], where: str) -> tuple[str, ...]:
    if value is None:
        return tuple(default)
    if (
        not isinstance(value, list)
        or len(value) != count
        or not all(isinstance(v, str) for v in value)
    ):
        raise ValidationError(f"{where} must be a list of {count} names, got {value!r}")
    return tuple(value)


def _choice(value: Any, known: dict, what: str, where: str) -> str:
    if value not in known:
        raise ValidationError(
            f"{where}: unknown {what} {value!r}; expected one of: {', '.join(known)}"
        )
    return value


def _flag(train: dict, key: str, where: str) -> bool:
    value = train.get(key, True)
    if not isinstance(value, bool):
        raise ValidationError(f"{where}.{key} must be true or false, got {value!r}")
    return value


def parse_network(data: Any, source: str = "<network>") -> NetworkFile:
    """Build a :class:`NetworkFile` from the parsed contents of a network file.

    Raises:
        ValidationError: naming ``source`` and the field at fault.
    """
    if not isinstance(data, dict):
        raise ValidationError(
            f"{source}: the top level must be an object with 'layers'"
        )
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValidationError(
            f"{source}: 'layers' must be a non-empty list; an empty network has "
            "nothing to train"
        )

    sizes: list[int] = []
    activations, shared, train_w, train_b = [], [], [], []
    weights, biases = [], []
    neuron_names, weight_names, bias_names = [], [], []
    for i, layer in enumerate(layers):
        where = f"{source}: layers[{i}]"
        if not isinstance(layer, dict):
            raise ValidationError(f"{where} must be an object with 'weights'")
        w = _matrix(layer.get("weights"), f"{where}.weights")
        n_out, n_in = w.shape
        if sizes and n_in != sizes[-1]:
            raise ValidationError(
                f"{where}.weights has shape ({n_out}, {n_in}); expected "
                f"({n_out}, {sizes[-1]}): one row per neuron, with one weight per "
                f"neuron of the layer below ({sizes[-1]})"
            )
        if not sizes:
            sizes.append(n_in)
        sizes.append(n_out)
        activations.append(
            _choice(layer.get("activation"), ACTIVATIONS, "activation", where)
        )

        bias = layer.get("bias", [0.0] * n_out)
        if isinstance(bias, list):
            b = np.asarray(_vector(bias, f"{where}.bias"), dtype=np.float64)
            if b.shape != (n_out,):
                raise ValidationError(
                    f"{where}.bias has {b.size} numbers; expected one shared number "
                    f"or one per neuron ({n_out})"
                )
        else:
            b = np.asarray(_number(bias, f"{where}.bias"), dtype=np.float64)
        shared.append(b.ndim == 0)
        weights.append(w)
        biases.append(b)

        train = layer.get("train", {})
        if not isinstance(train, dict):
            raise ValidationError(f"{where}.train must be an object, got {train!r}")
        train_w.append(_flag(train, "weights", f"{where}.train"))
        train_b.append(_flag(train, "bias", f"{where}.train"))

        prefix = (
            "o" if i == len(layers) - 1 else ("h" if len(layers) == 2 else f"h{i + 1}_")
        )
        neurons = _names(
            layer.get("neurons"),
            n_out,
            [f"{prefix}{j + 1}" for j in range(n_out)],
            f"{where}.neurons",
        )
        neuron_names.append(neurons)
        weight_names.append(_weight_names(layer.get("weight_names"), w.shape, i, where))
        bias_names.append(
            _bias_names(layer.get("bias_names"), b.shape, neurons, i, where)
        )

    try:
        network = Network(
            sizes=tuple(sizes),
            activations=tuple(activations),
            shared_bias=tuple(shared),
            train_weights=tuple(train_w),
            train_biases=tuple(train_b),
        )
    except ValidationError as error:
        raise ValidationError(f"{source}: {error}") from None

    inputs = data.get("inputs", {})
    input_names = _names(
        inputs.get("names") if isinstance(inputs, dict) else None,
        sizes[0],
        [f"x{j + 1}" for j in range(sizes[0])],
        f"{source}: inputs.names",
    )
    loss = _choice(data.get("loss", "half_sse"), LOSSES, "loss", f"{source}: loss")
    if "x" not in data or "t" not in data:
        raise ValidationError(f"{source}: the file needs inputs 'x' and targets 't'")
    x = _examples(data["x"], sizes[0], f"{source}: x", "input layer")
    batch = x.shape[:-1]
    if LOSSES[loss].integer_targets and not _holds_lists(data["t"]):
        t = _labels(data["t"], sizes[-1], batch, f"{source}: t")
    else:
        t = _examples(data["t"], sizes[-1], f"{source}: t", "output layer")
        if t.shape[:-1] != batch:
            raise ValidationError(
                f"{source}: t has {int(np.prod(t.shape[:-1]))} examples but x has "
                f"{int(np.prod(batch))}; give one target row per input row"
            )
    learning_rate = check_learning_rate(
        data.get("learning_rate", 0.5), f"{source}: learning_rate"
    )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ValidationError(f"{source}: description must be text")

    names = Names(
        input_names, tuple(neuron_names), tuple(weight_names), tuple(bias_names)
    )
    return NetworkFile(
        network,
        tuple(weights),
        tuple(biases),
        x,
        t,
        loss,
        learning_rate,
        names,
        description,
        source,
    )


def _holds_lists(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], list)


def _weight_names(value: Any, shape: tuple[int, int], layer: int, where: str):
    n_out, n_in = shape
    if value is None:
        return tuple(
            tuple(f"w{layer + 1}_{j + 1}{k + 1}" for k in range(n_in))
            for j in range(n_out)
        )
    if not isinstance(value, list) or len(value) != n_out:
        raise ValidationError(
            f"{where}.weight_names must have one row of {n_in} names per neuron "
            f"({n_out} rows)"
        )
    return tuple(
        _names(row, n_in, [], f"{where}.weight_names[{j}]")
        for j, row in enumerate(value)
    )


def _bias_names(
    value: Any, shape: tuple, neurons: tuple[str, ...], layer: int, where: str
):
    if not shape:
        if value is None:
            return f"b{layer + 1}"
        if not isinstance(value, str):
            raise ValidationError(
                f"{where}.bias_names must be one name for a shared bias"
            )
        return value
    return _names(value, shape[0], [f"b_{n}" for n in neurons], f"{where}.bias_names")


def read_network_file(path: str | Path | None = None) -> NetworkFile:
    """Read a network file (``.json`` or ``.toml``); ``None`` reads the worked example.

    Raises:
        ValidationError: for a missing file, a syntax error (with line and column) or
            any field that does not fit.
    """
    if path is None:
        text = resources.files("jbp").joinpath("networks", WORKED_EXAMPLE).read_text()
        return parse_network(json.loads(text), f"<built-in {WORKED_EXAMPLE}>")

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(
            f"network file {str(path)!r} not found; give the path of a .json or .toml "
            "file, or no path for the built-in worked example"
        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise ValidationError(
            f"cannot read network file {str(path)!r}: {error}"
        ) from None

    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValidationError(f"{path}: invalid TOML: {error}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValidationError(
                f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: "
                f"{error.msg}"
            ) from None
    return parse_network(data, str(path))
