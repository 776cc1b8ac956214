"""Network files: a small network written by hand, as JSON or TOML.

A file contains the layers (weights as one row per neuron, with the weights into that
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
import re
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
from jbp.validation import check_float_dtype, check_loss_fits

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
        """Return the parameters as JAX arrays of ``dtype``.

        Raises:
            ValidationError: for float64 outside ``jax.enable_x64(True)``, where
                JAX would silently give float32.
        """
        dtype = check_float_dtype(dtype)
        return tuple(
            Dense(w=jnp.asarray(w, dtype), b=jnp.asarray(b, dtype))
            for w, b in zip(self.weights, self.biases, strict=True)
        )


def _show(value: Any) -> str:
    """Write ``value`` as short JSON for a message, whatever its type or depth."""
    try:
        text = json.dumps(value, default=repr)
    except (RecursionError, ValueError):
        text = repr(type(value).__name__)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{where} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValidationError(
            f"{where} is {_show(value)}; every number must be finite, so replace it "
            "with a finite value"
        )
    return number


def _vector(value: Any, where: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise ValidationError(
            f"{where} must be a non-empty list of numbers, got {_show(value)}"
        )
    return [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _matrix(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise ValidationError(
            f"{where} must be a non-empty list of rows, got {_show(value)}"
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


def _depth(value: Any) -> int:
    """Count how deeply lists nest at the start of ``value``: 0 for a number."""
    depth = 0
    while isinstance(value, list) and value:
        depth += 1
        value = value[0]
    return depth


def _examples(value: Any, width: int, where: str, what: str) -> np.ndarray:
    """Read one example (a list) or a batch (a list of lists) of ``width`` numbers."""
    if _depth(value) >= 2:
        array = _matrix(value, where)
    else:
        array = np.asarray(_vector(value, where), dtype=np.float64)
    if array.shape[-1] != width:
        raise ValidationError(
            f"{where} has {_count(array.shape[-1], 'number')} per example, but the "
            f"{what} has {width} neurons; give {width}"
        )
    return array


def _labels(value: Any, classes: int, batch: tuple[int, ...], where: str) -> np.ndarray:
    labels = value if isinstance(value, list) else [value]
    for i, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, int):
            raise ValidationError(
                f"{where}[{i}] must be an integer class label, got {_show(label)}"
            )
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


NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*")
"""A name: a letter, then letters and digits, with ``_`` before each subscript."""


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValidationError(
            f"{where} must be a name such as w5, h1 or b_h1 (a letter, then letters, "
            f"digits or '_' followed by a letter or digit), got {_show(value)}"
        )
    return value


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _names(value: Any, count: int, default: list[str], where: str) -> tuple[str, ...]:
    if value is None:
        return tuple(default)
    if not isinstance(value, list) or len(value) != count:
        raise ValidationError(
            f"{where} must be a list of {_count(count, 'name')}, got {_show(value)}"
        )
    return tuple(_name(v, f"{where}[{i}]") for i, v in enumerate(value))


def _choice(value: Any, known: dict, what: str, where: str) -> str:
    if value is None:
        raise ValidationError(
            f"{where}: missing {what}; expected one of: {', '.join(known)}"
        )
    if not isinstance(value, str) or value not in known:
        raise ValidationError(
            f"{where}: unknown {what} {_show(value)}; expected one of: "
            f"{', '.join(known)}"
        )
    return value


def _check_keys(data: dict, known: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in known:
            raise ValidationError(
                f"{where}: unknown key {_show(key)}; expected some of: "
                f"{', '.join(known)}"
            )


def _flag(train: dict, key: str, where: str) -> bool:
    value = train.get(key, True)
    if not isinstance(value, bool):
        raise ValidationError(
            f"{where}.{key} must be true or false, got {_show(value)}"
        )
    return value


TOP_KEYS = ("description", "inputs", "layers", "x", "t", "loss", "learning_rate")
LAYER_KEYS = (
    "activation",
    "neurons",
    "weights",
    "weight_names",
    "bias",
    "bias_names",
    "train",
)


def parse_network(data: Any, source: str = "<network>") -> NetworkFile:
    """Build a :class:`NetworkFile` from the parsed contents of a network file.

    Any JSON or TOML value gives either a :class:`NetworkFile` or a
    :class:`~jbp.errors.ValidationError`.

    Raises:
        ValidationError: naming ``source`` and the field at fault.
    """
    if not isinstance(data, dict):
        raise ValidationError(
            f"{source}: the top level must be an object with 'layers', 'x' and 't', "
            f"got {_show(data)}"
        )
    _check_keys(data, TOP_KEYS, source)
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValidationError(
            f"{source}: 'layers' must be a non-empty list of layer objects, got "
            f"{_show(layers)}"
        )

    sizes: list[int] = []
    activations, shared, train_w, train_b = [], [], [], []
    weights, biases = [], []
    neuron_names, weight_names, bias_names = [], [], []
    for i, layer in enumerate(layers):
        where = f"{source}: layers[{i}]"
        if not isinstance(layer, dict):
            raise ValidationError(f"{where} must be an object with 'weights'")
        _check_keys(layer, LAYER_KEYS, where)
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

        if "bias" not in layer and isinstance(layer.get("bias_names"), str):
            raise ValidationError(
                f"{where} names a shared bias {layer['bias_names']!r} but has no "
                "'bias'; add one, such as \"bias\": 0.0"
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
            raise ValidationError(
                f"{where}.train must be an object such as "
                f'{{"weights": true, "bias": false}}, got {_show(train)}'
            )
        _check_keys(train, ("weights", "bias"), f"{where}.train")
        train_w.append(_flag(train, "weights", f"{where}.train"))
        train_b.append(_flag(train, "bias", f"{where}.train"))

        if i == len(layers) - 1:
            prefix = "o"
        elif len(layers) == 2:
            prefix = "h"
        else:
            prefix = f"h{i + 1}_"
        neurons = _names(
            layer.get("neurons"),
            n_out,
            [f"{prefix}{j + 1}" for j in range(n_out)],
            f"{where}.neurons",
        )
        neuron_names.append(neurons)
        first = sum(len(m) * len(m[0]) for m in weights[:-1]) + 1
        weight_names.append(
            _weight_names(layer.get("weight_names"), w.shape, first, where)
        )
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
    if not isinstance(inputs, dict):
        raise ValidationError(
            f'{source}: inputs must be an object such as {{"names": ["x1", "x2"]}}, '
            f"got {_show(inputs)}"
        )
    _check_keys(inputs, ("names",), f"{source}: inputs")
    input_names = _names(
        inputs.get("names"),
        sizes[0],
        [f"x{j + 1}" for j in range(sizes[0])],
        f"{source}: inputs.names",
    )
    loss = _choice(data.get("loss", "half_sse"), LOSSES, "loss", f"{source}: loss")
    try:
        check_loss_fits(network, LOSSES[loss])
    except ValidationError as error:
        raise ValidationError(f"{source}: {error}") from None

    if "x" not in data or "t" not in data:
        raise ValidationError(f"{source}: the file needs inputs 'x' and targets 't'")
    x = _examples(data["x"], sizes[0], f"{source}: x", "input layer")
    t = _targets(data["t"], loss, sizes[-1], x.shape[:-1], f"{source}: t")

    learning_rate = _number(data.get("learning_rate", 0.5), f"{source}: learning_rate")
    if learning_rate <= 0:
        raise ValidationError(
            f"{source}: learning_rate must be greater than 0, got {learning_rate}"
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ValidationError(f"{source}: description must be text")

    names = Names(
        input_names, tuple(neuron_names), tuple(weight_names), tuple(bias_names)
    )
    _check_unique(names, source)
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


def _targets(
    value: Any, loss: str, classes: int, batch: tuple[int, ...], where: str
) -> np.ndarray:
    """Read targets: one row per example, or integer class labels for cross-entropy.

    One nesting level fewer than the inputs means class labels: ``t: 2`` for one
    example, ``t: [0, 2]`` for a batch of two.
    """
    if LOSSES[loss].integer_targets and _depth(value) == len(batch):
        return _labels(value, classes, batch, where)
    t = _examples(value, classes, where, "output layer")
    if t.shape[:-1] != batch:
        raise ValidationError(
            f"{where} has {int(np.prod(t.shape[:-1]))} examples but x has "
            f"{int(np.prod(batch))}; give one target row per input row"
        )
    if loss == "cross_entropy":
        # The gradient softmax(net) - t of cross-entropy holds only for targets that
        # sum to 1, so anything else is rejected rather than silently misderived.
        sums = t.sum(axis=-1)
        if (t < 0).any():
            raise ValidationError(
                f"{where} contains the negative value {t.min():g}; cross_entropy needs "
                "probabilities (numbers >= 0 that sum to 1 for every example) or "
                "integer class labels"
            )
        if (np.abs(sums - 1) > 1e-9).any():
            raise ValidationError(
                f"{where} must hold probability distributions for cross_entropy "
                "(numbers >= 0 that sum to 1 for every example) or integer class "
                f"labels, got row sums {_show(np.round(sums, 12).tolist())}"
            )
    if loss == "binary_cross_entropy" and ((t < 0) | (t > 1)).any():
        raise ValidationError(
            f"{where} must lie in [0, 1] for binary_cross_entropy, got "
            f"{_show(t.tolist())}"
        )
    return t


def _check_unique(names: Names, source: str) -> None:
    """Raise if two parts share a name, since the derivation refers to them by name."""
    seen: set[str] = set()
    flat = list(names.inputs)
    for layer in range(len(names.neurons)):
        flat.extend(names.neurons[layer])
        flat.extend(name for row in names.weights[layer] for name in row)
        bias = names.biases[layer]
        flat.extend([bias] if isinstance(bias, str) else bias)
    for name in flat:
        if name in seen:
            raise ValidationError(
                f"{source}: the name {name!r} is used twice; give every input, "
                "neuron, weight and bias its own name"
            )
        seen.add(name)


def _weight_names(value: Any, shape: tuple[int, int], first: int, where: str):
    """Read a layer's weight names, numbering w1, w2, ... across layers by default."""
    n_out, n_in = shape
    if value is None:
        return tuple(
            tuple(f"w{first + j * n_in + k}" for k in range(n_in)) for j in range(n_out)
        )
    if not isinstance(value, list) or len(value) != n_out:
        raise ValidationError(
            f"{where}.weight_names must have one row of {n_in} names per neuron "
            f"({n_out} rows), got {_show(value)}"
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
        return _name(value, f"{where}.bias_names (one name for a shared bias)")
    return _names(value, shape[0], [f"b_{n}" for n in neurons], f"{where}.bias_names")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a JSON object, rejecting a key given twice (JSON keeps the last)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValidationError(
                f"the key {key!r} appears twice in one object; keep one of them"
            )
        seen[key] = value
    return seen


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
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValidationError(
            f"network file {str(path)!r} not found; give the path of a .json or .toml "
            "file, or no path for the built-in worked example"
        ) from None
    except IsADirectoryError:
        raise ValidationError(
            f"{str(path)!r} is a folder; give the path of a .json or .toml network file"
        ) from None
    except UnicodeDecodeError:
        raise ValidationError(
            f"network file {str(path)!r} is not UTF-8 text; save it as UTF-8 JSON or "
            "TOML"
        ) from None
    except OSError as error:
        raise ValidationError(
            f"cannot read network file {str(path)!r} ({error.strerror}); check that "
            "it exists and is readable"
        ) from None

    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValidationError(f"{path}: invalid TOML: {error}") from None
    else:
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as error:
            raise ValidationError(
                f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: "
                f"{error.msg}"
            ) from None
        except ValidationError as error:
            raise ValidationError(f"{path}: {error}") from None
        except RecursionError:
            raise ValidationError(
                f"{path}: invalid network file: lists or objects nest too deeply"
            ) from None
    return parse_network(data, str(path))
