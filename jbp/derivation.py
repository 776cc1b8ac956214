"""Every gradient of a small network, derived as the classic worked example does it.

:func:`derive` turns a :class:`~jbp.netfile.NetworkFile` into data: the forward pass,
the error terms, the chain rule for every weight and bias with the numbers in it, and
the update ``w+ = w - eta dE/dw``. It contains no text, because :mod:`jbp.render`
writes it out.

Each equation is ``lhs = rhs = value``, where ``rhs`` is an expression tree whose
leaves carry both a symbol and its value, so a renderer can print the symbolic form
and the numeric form of the same right-hand side. Every value comes from the library:
the forward trace and the deltas of :func:`jbp.backprop.backpropagate`, the loss of
:func:`jbp.backprop.loss_value`, the derivative of each activation and ``jax.grad``
or ``jax.jacobian`` of the loss and of softmax. Everything is computed in float64.

Two forms exist. The *chain* form writes one chain-rule line per parameter and
example. The *delta* form, for larger networks, gives the delta recursion per layer
and a table per neuron. :data:`CHAIN_RULE_LIMIT` picks between them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jbp.activations import get_activation
from jbp.backprop import backpropagate, loss_value
from jbp.errors import ValidationError
from jbp.losses import get_loss
from jbp.netfile import NetworkFile
from jbp.network import Network

CHAIN_RULE_LIMIT = 64
"""The maximum number of chain-rule derivations (parameters times examples).

Beyond it, ``form="auto"`` gives the delta form. The worked example needs 10, a
3-4-4-2 network with a bias per neuron and one example needs 46.
"""

FORMS = ("auto", "chain", "delta")

# Forms of the output layer's dE/dnet:
ELEMENTWISE = "elementwise"  # dE/dout * dout/dnet, for half_sse and mse
SOFTMAX_JACOBIAN = "softmax_jacobian"  # sum_k dE/dout_k dout_k/dnet_j
LOGITS = "logits"  # p - t, for the cross-entropy losses on the net input


class Symbol(NamedTuple):
    """A named quantity of the derivation.

    Attributes:
        kind: ``x``, ``net``, ``out``, ``p`` (a probability of the cross-entropy
            losses), ``t``, ``w``, ``b``, ``E`` (the error), ``E_term`` (one output's
            part of the error), ``eta`` (the learning rate) or ``N`` (the batch size).
        name: the name from the network file (``w5``, ``o1``); empty for ``E``.
        example: the 1-based example number within a batch; None for a single
            example and for quantities of the whole batch.
        updated: whether this is the value after the update (``w5+``).
    """

    kind: str
    name: str = ""
    example: int | None = None
    updated: bool = False


class Var(NamedTuple):
    """A symbol with its value: a leaf of an expression."""

    symbol: Symbol
    value: float


class Partial(NamedTuple):
    """The partial derivative ``d of / d wrt`` with its value: a leaf."""

    of: Symbol
    wrt: Symbol
    value: float


class Const(NamedTuple):
    """A number that is the same in the symbolic and the numeric form (1, 2, 1/2)."""

    value: float


class Op(NamedTuple):
    """An operation on sub-expressions.

    ``op`` is one of ``add``, ``sub``, ``mul``, ``div``, ``neg``, ``square``,
    ``mean`` (the average of the arguments), ``exp``, ``log``, ``tanh``, ``max0``
    (``max(0, a)``), ``positive`` (1 if ``a > 0`` else 0), ``Phi`` and ``phi`` (the
    standard normal CDF and density).
    """

    op: str
    args: tuple


Expr = Var | Partial | Const | Op


class Equation(NamedTuple):
    """``lhs = rhs = value``; ``rhs`` is None when the value is simply stated.

    ``note`` is ``"frozen"`` for the update of a parameter that does not train.
    """

    lhs: Var | Partial
    rhs: Expr | None
    value: float
    note: str = ""


class Section(NamedTuple):
    """A group of equations.

    Attributes:
        kind: ``forward`` (one layer's forward pass), ``error``, ``backward`` (one
            layer's chain rule), ``mean`` (the batch mean of the gradients) or
            ``update``.
        layer: the 0-based layer of a ``forward`` or ``backward`` section.
        example: the 1-based example number in a batch, else None.
        equations: the equations, in the order they are derived.
    """

    kind: str
    layer: int | None
    example: int | None
    equations: tuple[Equation, ...]


class NeuronRow(NamedTuple):
    """One neuron's values for one example, in the delta form.

    ``dE_dout`` and ``dout_dnet`` are None where the output layer's delta is not
    their product (softmax Jacobian, cross-entropy on the net input).
    """

    example: int | None
    neuron: str
    net: float
    out: float
    dE_dout: float | None
    dout_dnet: float | None
    delta: float


class ParameterRow(NamedTuple):
    """One parameter's value, its gradient and its value after the update."""

    name: str
    value: float
    gradient: float
    updated: float
    trains: bool


class NeuronTable(NamedTuple):
    """The parameters into one neuron: its weights, then its own bias if any."""

    neuron: str
    rows: tuple[ParameterRow, ...]


class LayerTable(NamedTuple):
    """One layer of the delta form: its neurons' values and its parameters."""

    layer: int
    neurons: tuple[NeuronRow, ...]
    parameters: tuple[NeuronTable, ...]
    shared_bias: ParameterRow | None


class Derivation(NamedTuple):
    """A whole derivation, ready for a renderer.

    Attributes:
        file: the network file it derives.
        form: ``chain`` or ``delta``.
        output_form: how the output delta is written (``elementwise``,
            ``softmax_jacobian`` or ``logits``).
        examples: the number of examples (1 for a single example).
        loss: the error ``E`` (the mean over the examples of a batch).
        sections: the forward pass, the error and, in the chain form, the chain
            rule for every parameter, then the batch mean and the update.
        layers: in the delta form, one table per layer, output layer first.
        grads: per layer, ``(dE/dw, dE/db)`` as NumPy float64 arrays.
        updated: per layer, ``(w+, b+)`` after one SGD step of the trained
            parameters.
    """

    file: NetworkFile
    form: str
    output_form: str
    examples: int
    loss: float
    sections: tuple[Section, ...]
    layers: tuple[LayerTable, ...]
    grads: tuple[tuple[np.ndarray, np.ndarray], ...]
    updated: tuple[tuple[np.ndarray, np.ndarray], ...]


def output_form(file: NetworkFile) -> str:
    """Say how the output layer's ``dE/dnet`` is written for its loss and activation."""
    return _output_form(file.network, file.loss)


def _output_form(network: Network, loss: str) -> str:
    if loss in ("cross_entropy", "binary_cross_entropy"):
        return LOGITS
    if network.activations[-1] == "softmax":
        return SOFTMAX_JACOBIAN
    return ELEMENTWISE


def parameter_count(file: NetworkFile) -> int:
    """Count the weights and biases of the network in ``file``."""
    return sum(w.size + b.size for w, b in zip(file.weights, file.biases, strict=True))


def example_count(file: NetworkFile) -> int:
    """Count the examples of ``file``: 1 for a single example."""
    return 1 if file.x.ndim == 1 else file.x.shape[0]


def choose_form(file: NetworkFile, form: str = "auto") -> str:
    """Resolve ``form`` to ``chain`` or ``delta`` by :data:`CHAIN_RULE_LIMIT`.

    Raises:
        ValidationError: for a form other than ``auto``, ``chain`` or ``delta``.
    """
    if form not in FORMS:
        raise ValidationError(
            f"unknown form {form!r}; expected one of: {', '.join(FORMS)}"
        )
    if form != "auto":
        return form
    lines = parameter_count(file) * example_count(file)
    return "chain" if lines <= CHAIN_RULE_LIMIT else "delta"


class _Example(NamedTuple):
    """Forward and backward values of one example, as float64 NumPy arrays."""

    number: int | None
    inputs: tuple[np.ndarray, ...]
    nets: tuple[np.ndarray, ...]
    outs: tuple[np.ndarray, ...]
    deltas: tuple[np.ndarray, ...]
    slopes: tuple[np.ndarray | None, ...]
    grads: tuple[tuple[np.ndarray, np.ndarray], ...]
    t: np.ndarray
    dE_dout: np.ndarray | None
    dout_dnet: np.ndarray | None
    p: np.ndarray | None
    error_terms: np.ndarray
    loss: float


def _example_arrays(network: Network, loss_name: str, params, x, t) -> dict:
    """Compute every value of one example's derivation (``x`` of shape (n_in,))."""
    loss = get_loss(loss_name)
    backward = backpropagate(network, params, x, t, loss_name)
    trace = backward.trace
    net, out = trace.nets[-1], trace.outs[-1]
    classes = network.out_size
    if jnp.issubdtype(t.dtype, jnp.integer):
        target = jax.nn.one_hot(t, classes, dtype=net.dtype)
    else:
        target = t.astype(net.dtype)

    activation = get_activation(network.activations[-1])
    p = dE_dout = dout_dnet = None
    if _output_form(network, loss_name) == LOGITS:
        if loss.name == "cross_entropy":
            p = jax.nn.softmax(net)
            error_terms = -target * jax.nn.log_softmax(net)
        else:
            p = jax.nn.sigmoid(net)
            error_terms = optax.sigmoid_binary_cross_entropy(net, target)
    else:
        dE_dout = jax.grad(lambda o: loss.per_example(net, o, target))(out)
        if activation.derivative is None:
            dout_dnet = jax.jacobian(activation.forward)(net)
        else:
            dout_dnet = activation.derivative(net, out)
        if loss.name == "half_sse":
            error_terms = optax.l2_loss(out, target)
        else:
            error_terms = optax.squared_error(out, target) / classes

    slopes = []
    for layer, name in enumerate(network.activations):
        derivative = get_activation(name).derivative
        slopes.append(
            None
            if derivative is None
            else derivative(trace.nets[layer], trace.outs[layer])
        )
    return {
        "inputs": trace.inputs,
        "nets": trace.nets,
        "outs": trace.outs,
        "deltas": backward.deltas,
        "slopes": tuple(slopes),
        "grads": tuple((g.w, g.b) for g in backward.grads),
        "t": target,
        "dE_dout": dE_dout,
        "dout_dnet": dout_dnet,
        "p": p,
        "error_terms": error_terms,
        "loss": loss_value(network, params, x, t, loss_name),
    }


@functools.partial(jax.jit, static_argnums=(0, 1))
def _all_arrays(network: Network, loss_name: str, params, x, t):
    """Compute every example's values, the batch gradient and the batch loss.

    One compiled function per network keeps the derivation of a small network
    quick: without it, every operation would be compiled on its own.
    """
    batch = x.reshape(-1, network.in_size)
    targets = t.reshape((batch.shape[0], *t.shape[x.ndim - 1 :]))
    per_example = jax.vmap(
        lambda xn, tn: _example_arrays(network, loss_name, params, xn, tn)
    )(batch, targets)
    whole = backpropagate(network, params, x, t, loss_name)
    grads = tuple((g.w, g.b) for g in whole.grads)
    return per_example, grads, loss_value(network, params, x, t, loss_name)


def _numpy(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _pick(arrays: dict, n: int, number: int | None) -> _Example:
    """Take example ``n`` out of the vectorised values, as NumPy arrays."""

    def take(value):
        return None if value is None else _numpy(value[n])

    return _Example(
        number=number,
        inputs=tuple(take(a) for a in arrays["inputs"]),
        nets=tuple(take(a) for a in arrays["nets"]),
        outs=tuple(take(a) for a in arrays["outs"]),
        deltas=tuple(take(a) for a in arrays["deltas"]),
        slopes=tuple(take(a) for a in arrays["slopes"]),
        grads=tuple((take(w), take(b)) for w, b in arrays["grads"]),
        t=take(arrays["t"]),
        dE_dout=take(arrays["dE_dout"]),
        dout_dnet=take(arrays["dout_dnet"]),
        p=take(arrays["p"]),
        error_terms=take(arrays["error_terms"]),
        loss=float(arrays["loss"][n]),
    )


def derive(file: NetworkFile, form: str = "auto") -> Derivation:
    """Derive every gradient of ``file``'s network on its examples, in float64.

    Args:
        file: a parsed network file.
        form: ``chain`` (one chain-rule line per parameter), ``delta`` (the delta
            recursion and a table per neuron) or ``auto`` (``chain`` up to
            :data:`CHAIN_RULE_LIMIT` parameters times examples).

    Returns:
        The derivation, with every number computed here.
    """
    form = choose_form(file, form)
    with jax.enable_x64(True):
        params = file.params(jnp.float64)
        x = jnp.asarray(file.x, jnp.float64)
        t = jnp.asarray(file.t)
        arrays, grads, loss = _all_arrays(file.network, file.loss, params, x, t)
        grads = tuple((_numpy(w), _numpy(b)) for w, b in grads)
        loss = float(loss)
    batch = example_count(file)
    if batch == 1:
        # A batch of one is written as a single example: its mean is itself.
        examples = [_pick(arrays, 0, None)]
    else:
        examples = [_pick(arrays, n, n + 1) for n in range(batch)]

    updated = _updated(file, grads)
    sections: list[Section] = []
    layers: tuple[LayerTable, ...] = ()
    for example in examples:
        sections.extend(_forward_sections(file, example))
        sections.append(_error_section(file, example))
    if batch > 1:
        sections.append(_batch_error_section(examples, loss))
    if form == "chain":
        for example in examples:
            for layer in range(file.network.num_layers - 1, -1, -1):
                sections.append(_backward_section(file, example, layer))
        if batch > 1:
            sections.append(_mean_section(file, examples, grads))
        sections.append(_update_section(file, grads, updated))
    else:
        layers = tuple(
            _layer_table(file, examples, grads, updated, layer)
            for layer in range(file.network.num_layers - 1, -1, -1)
        )
    return Derivation(
        file=file,
        form=form,
        output_form=output_form(file),
        examples=batch,
        loss=loss,
        sections=tuple(sections),
        layers=layers,
        grads=grads,
        updated=updated,
    )


def _updated(file: NetworkFile, grads) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Take one SGD step, ``w+ = w - eta dE/dw``, for the parameters that train."""
    network, eta = file.network, file.learning_rate
    result = []
    for layer, (dw, db) in enumerate(grads):
        w, b = file.weights[layer], file.biases[layer]
        w_new = w - eta * dw if network.train_weights[layer] else w.copy()
        b_new = b - eta * db if network.train_biases[layer] else b.copy()
        result.append((w_new, b_new))
    return tuple(result)


# Symbols ------------------------------------------------------------------------


def _neuron(file: NetworkFile, layer: int, j: int) -> str:
    return file.names.neurons[layer][j]


def _input_symbol(file: NetworkFile, layer: int, k: int, number: int | None) -> Symbol:
    """Name input ``k`` of ``layer``: an input feature or a neuron's out."""
    if layer == 0:
        return Symbol("x", file.names.inputs[k], number)
    return Symbol("out", _neuron(file, layer - 1, k), number)


def _weight(file: NetworkFile, layer: int, j: int, k: int) -> Symbol:
    return Symbol("w", file.names.weights[layer][j][k])


def _bias(file: NetworkFile, layer: int, j: int) -> Symbol:
    names = file.names.biases[layer]
    return Symbol("b", names if isinstance(names, str) else names[j])


def _bias_value(file: NetworkFile, layer: int, j: int) -> float:
    b = file.biases[layer]
    return float(b) if b.ndim == 0 else float(b[j])


def _activation_expr(name: str, net: list[Var], j: int) -> Expr:
    """Write neuron ``j``'s activation as an expression of the layer's net inputs."""
    z = net[j]
    if name == "sigmoid":
        return Op(
            "div", (Const(1.0), Op("add", (Const(1.0), Op("exp", (Op("neg", (z,)),)))))
        )
    if name == "tanh":
        return Op("tanh", (z,))
    if name == "relu":
        return Op("max0", (z,))
    if name == "gelu":
        return Op("mul", (z, Op("Phi", (z,))))
    if name == "identity":
        return z
    if name == "softmax":
        return Op(
            "div", (Op("exp", (z,)), Op("add", tuple(Op("exp", (n,)) for n in net)))
        )
    raise ValidationError(f"no derivation is written for activation {name!r}")


def _derivative_expr(name: str, net: Var, out: Var) -> Expr:
    """``dout/dnet`` of an elementwise activation, as the classic text writes it."""
    if name == "sigmoid":
        return Op("mul", (out, Op("sub", (Const(1.0), out))))
    if name == "tanh":
        return Op("sub", (Const(1.0), Op("square", (out,))))
    if name == "relu":
        return Op("positive", (net,))
    if name == "gelu":
        return Op("add", (Op("Phi", (net,)), Op("mul", (net, Op("phi", (net,))))))
    if name == "identity":
        return Const(1.0)
    raise ValidationError(f"activation {name!r} has no elementwise derivative")


# Forward pass and error ----------------------------------------------------------


def _forward_sections(file: NetworkFile, example: _Example) -> list[Section]:
    sections = []
    number = example.number
    for layer in range(file.network.num_layers):
        n_out, n_in = file.weights[layer].shape
        equations = []
        nets = []
        for j in range(n_out):
            terms = [
                Op(
                    "mul",
                    (
                        Var(
                            _weight(file, layer, j, k), float(file.weights[layer][j, k])
                        ),
                        Var(
                            _input_symbol(file, layer, k, number),
                            float(example.inputs[layer][k]),
                        ),
                    ),
                )
                for k in range(n_in)
            ]
            terms.append(Var(_bias(file, layer, j), _bias_value(file, layer, j)))
            net = Var(
                Symbol("net", _neuron(file, layer, j), number),
                float(example.nets[layer][j]),
            )
            nets.append(net)
            equations.append(Equation(net, Op("add", tuple(terms)), net.value))
        activation = file.network.activations[layer]
        for j in range(n_out):
            out = Var(
                Symbol("out", _neuron(file, layer, j), number),
                float(example.outs[layer][j]),
            )
            equations.append(
                Equation(out, _activation_expr(activation, nets, j), out.value)
            )
        sections.append(Section("forward", layer, number, tuple(equations)))
    return sections


def _output_vars(file: NetworkFile, example: _Example):
    """Build the output layer's net, out, p (or None) and t leaves of one example."""
    top = file.network.num_layers - 1
    number = example.number
    names = file.names.neurons[top]
    net = [
        Var(Symbol("net", n, number), float(v))
        for n, v in zip(names, example.nets[top], strict=True)
    ]
    out = [
        Var(Symbol("out", n, number), float(v))
        for n, v in zip(names, example.outs[top], strict=True)
    ]
    t = [
        Var(Symbol("t", n, number), float(v))
        for n, v in zip(names, example.t, strict=True)
    ]
    p = None
    if example.p is not None:
        if file.network.activations[top] in ("softmax", "sigmoid"):
            # The output activation already is the probability.
            p = out
        else:
            p = [
                Var(Symbol("p", n, number), float(v))
                for n, v in zip(names, example.p, strict=True)
            ]
    return net, out, p, t


def _error_section(file: NetworkFile, example: _Example) -> Section:
    loss = file.loss
    number = example.number
    net, out, p, t = _output_vars(file, example)
    classes = len(out)
    equations = []
    if p is not None and p is not out:
        activation = "softmax" if loss == "cross_entropy" else "sigmoid"
        for j, pj in enumerate(p):
            equations.append(
                Equation(pj, _activation_expr(activation, net, j), pj.value)
            )

    terms = []
    for k in range(classes):
        if loss == "half_sse":
            rhs = Op("mul", (Const(0.5), Op("square", (Op("sub", (t[k], out[k])),))))
        elif loss == "mse":
            rhs = Op(
                "div", (Op("square", (Op("sub", (t[k], out[k])),)), Const(classes))
            )
        elif loss == "cross_entropy":
            rhs = Op("neg", (Op("mul", (t[k], Op("log", (p[k],)))),))
        else:
            rhs = Op(
                "neg",
                (
                    Op(
                        "add",
                        (
                            Op("mul", (t[k], Op("log", (p[k],)))),
                            Op(
                                "mul",
                                (
                                    Op("sub", (Const(1.0), t[k])),
                                    Op("log", (Op("sub", (Const(1.0), p[k])),)),
                                ),
                            ),
                        ),
                    ),
                ),
            )
        term = Var(
            Symbol("E_term", out[k].symbol.name, number), float(example.error_terms[k])
        )
        terms.append(term)
        equations.append(Equation(term, rhs, term.value))
    total = Var(Symbol("E", "", number), example.loss)
    equations.append(Equation(total, Op("add", tuple(terms)), total.value))
    return Section("error", None, number, tuple(equations))


def _batch_error_section(examples: list[_Example], loss: float) -> Section:
    terms = tuple(Var(Symbol("E", "", e.number), e.loss) for e in examples)
    total = Var(Symbol("E"), loss)
    return Section("error", None, None, (Equation(total, Op("mean", terms), loss),))


# Backward pass ------------------------------------------------------------------


def _backward_section(file: NetworkFile, example: _Example, layer: int) -> Section:
    """Write the chain rule for every parameter of ``layer`` on one example."""
    network = file.network
    top = network.num_layers - 1
    number = example.number
    E = Symbol("E", "", number)
    names = file.names.neurons[layer]
    n_out = file.weights[layer].shape[0]
    equations: list[Equation] = []
    net_symbols = [Symbol("net", n, number) for n in names]
    out_symbols = [Symbol("out", n, number) for n in names]
    delta = example.deltas[layer]
    # Factors of dE/dw: (dE/dout, dout/dnet) for elementwise neurons, else dE/dnet.
    factors: list[tuple[Partial, ...]] = []

    if layer == top:
        form = output_form(file)
        net, out, p, t = _output_vars(file, example)
        if form == LOGITS:
            for j in range(n_out):
                lhs = Partial(E, net_symbols[j], float(delta[j]))
                equations.append(Equation(lhs, Op("sub", (p[j], t[j])), lhs.value))
                factors.append((lhs,))
        else:
            dE_dout = [
                Partial(E, out_symbols[k], float(example.dE_dout[k]))
                for k in range(n_out)
            ]
            for k in range(n_out):
                equations.append(
                    Equation(
                        dE_dout[k],
                        _loss_derivative(file, t[k], out[k]),
                        dE_dout[k].value,
                    )
                )
            if form == ELEMENTWISE:
                activation = network.activations[layer]
                for j in range(n_out):
                    local = Partial(
                        out_symbols[j], net_symbols[j], float(example.dout_dnet[j])
                    )
                    equations.append(
                        Equation(
                            local,
                            _derivative_expr(activation, net[j], out[j]),
                            local.value,
                        )
                    )
                    lhs = Partial(E, net_symbols[j], float(delta[j]))
                    equations.append(
                        Equation(lhs, Op("mul", (dE_dout[j], local)), lhs.value)
                    )
                    factors.append((dE_dout[j], local))
            else:
                jacobian = example.dout_dnet
                for j in range(n_out):
                    terms = []
                    for k in range(n_out):
                        local = Partial(
                            out_symbols[k], net_symbols[j], float(jacobian[k, j])
                        )
                        if k == j:
                            rhs = Op("mul", (out[k], Op("sub", (Const(1.0), out[j]))))
                        else:
                            rhs = Op("neg", (Op("mul", (out[k], out[j])),))
                        equations.append(Equation(local, rhs, local.value))
                        terms.append(Op("mul", (dE_dout[k], local)))
                    lhs = Partial(E, net_symbols[j], float(delta[j]))
                    equations.append(Equation(lhs, Op("add", tuple(terms)), lhs.value))
                    factors.append((lhs,))
    else:
        factors = _hidden_neurons(file, example, layer, equations)

    _parameter_equations(file, example, layer, factors, equations)
    return Section("backward", layer, number, tuple(equations))


def _loss_derivative(file: NetworkFile, t: Var, out: Var) -> Expr:
    """``dE/dout_k`` of the losses on the outputs, as the classic text writes it."""
    difference = Op("sub", (t, out))
    if file.loss == "half_sse":
        return Op("neg", (difference,))
    classes = file.network.out_size
    return Op(
        "neg", (Op("mul", (Op("div", (Const(2.0), Const(classes))), difference)),)
    )


def _hidden_neurons(
    file: NetworkFile, example: _Example, layer: int, equations: list[Equation]
) -> list[tuple[Partial, ...]]:
    """Write dE/dout as the sum over the paths through the layer above, then delta."""
    network = file.network
    top = network.num_layers - 1
    number = example.number
    E = Symbol("E", "", number)
    names = file.names.neurons[layer]
    above = file.names.neurons[layer + 1]
    w_above = file.weights[layer + 1]
    delta_above = example.deltas[layer + 1]
    # With one error term per output and an elementwise output activation, only
    # E_k depends on net_k, so the path through output k is dE_k/dout_h, as in the
    # classic text. Elsewhere each path is written dE/dnet_k * dnet_k/dout_h.
    per_output = layer + 1 == top and output_form(file) == ELEMENTWISE
    activation = network.activations[layer]
    slopes = example.slopes[layer]
    if per_output:
        for k, upper in enumerate(above):
            net_k = Symbol("net", upper, number)
            d_E_k = Partial(
                Symbol("E_term", upper, number), net_k, float(delta_above[k])
            )
            equations.append(
                Equation(d_E_k, Partial(E, net_k, d_E_k.value), d_E_k.value)
            )
    factors = []
    for j, name in enumerate(names):
        out_symbol = Symbol("out", name, number)
        net_symbol = Symbol("net", name, number)
        paths = []
        for k, upper in enumerate(above):
            net_k = Symbol("net", upper, number)
            d_net_k = Partial(net_k, out_symbol, float(w_above[k, j]))
            if per_output:
                E_k = Symbol("E_term", upper, number)
                d_E_k = Partial(E_k, net_k, float(delta_above[k]))
                path = Partial(E_k, out_symbol, float(delta_above[k] * w_above[k, j]))
                equations.append(
                    Equation(path, Op("mul", (d_E_k, d_net_k)), path.value)
                )
                paths.append(path)
            else:
                d_E = Partial(E, net_k, float(delta_above[k]))
                paths.append(Op("mul", (d_E, d_net_k)))
        dE_dout = Partial(E, out_symbol, float(delta_above @ w_above[:, j]))
        equations.append(Equation(dE_dout, Op("add", tuple(paths)), dE_dout.value))

        net = Var(net_symbol, float(example.nets[layer][j]))
        out = Var(out_symbol, float(example.outs[layer][j]))
        local = Partial(out_symbol, net_symbol, float(slopes[j]))
        equations.append(
            Equation(local, _derivative_expr(activation, net, out), local.value)
        )
        delta = Partial(E, net_symbol, float(example.deltas[layer][j]))
        equations.append(Equation(delta, Op("mul", (dE_dout, local)), delta.value))
        factors.append((dE_dout, local))
    return factors


def _parameter_equations(
    file: NetworkFile,
    example: _Example,
    layer: int,
    factors: list[tuple[Partial, ...]],
    equations: list[Equation],
) -> None:
    """Append dnet/dw = input and dE/dw = product of factors for every parameter."""
    number = example.number
    E = Symbol("E", "", number)
    names = file.names.neurons[layer]
    n_in = file.weights[layer].shape[1]
    dw, db = example.grads[layer]
    for j, name in enumerate(names):
        net_symbol = Symbol("net", name, number)
        for k in range(n_in):
            weight = _weight(file, layer, j, k)
            source = Var(
                _input_symbol(file, layer, k, number), float(example.inputs[layer][k])
            )
            local = Partial(net_symbol, weight, source.value)
            equations.append(Equation(local, source, local.value))
            lhs = Partial(E, weight, float(dw[j, k]))
            equations.append(Equation(lhs, Op("mul", (*factors[j], local)), lhs.value))
        if not file.network.shared_bias[layer]:
            bias = _bias(file, layer, j)
            local = Partial(net_symbol, bias, 1.0)
            lhs = Partial(E, bias, float(db[j]))
            equations.append(Equation(lhs, Op("mul", (*factors[j], local)), lhs.value))
    if file.network.shared_bias[layer]:
        bias = _bias(file, layer, 0)
        terms = []
        for j, name in enumerate(names):
            net_symbol = Symbol("net", name, number)
            d_net = Partial(E, net_symbol, float(example.deltas[layer][j]))
            terms.append(Op("mul", (d_net, Partial(net_symbol, bias, 1.0))))
        lhs = Partial(E, bias, float(db))
        equations.append(Equation(lhs, Op("add", tuple(terms)), lhs.value))


def _parameters(file: NetworkFile, layer: int):
    """Yield ``(symbol, index)`` for each parameter of ``layer``, weights first."""
    n_out, n_in = file.weights[layer].shape
    for j in range(n_out):
        for k in range(n_in):
            yield _weight(file, layer, j, k), ("w", j, k)
    if file.network.shared_bias[layer]:
        yield _bias(file, layer, 0), ("b",)
    else:
        for j in range(n_out):
            yield _bias(file, layer, j), ("b", j)


def _lookup(pair: tuple[np.ndarray, np.ndarray], index: tuple) -> float:
    array = pair[0] if index[0] == "w" else pair[1]
    return float(array[index[1:]])


def _mean_section(file: NetworkFile, examples: list[_Example], grads) -> Section:
    equations = []
    for layer in range(file.network.num_layers - 1, -1, -1):
        for symbol, index in _parameters(file, layer):
            terms = tuple(
                Partial(
                    Symbol("E", "", e.number), symbol, _lookup(e.grads[layer], index)
                )
                for e in examples
            )
            value = _lookup(grads[layer], index)
            equations.append(
                Equation(Partial(Symbol("E"), symbol, value), Op("mean", terms), value)
            )
    return Section("mean", None, None, tuple(equations))


def _update_section(file: NetworkFile, grads, updated) -> Section:
    network = file.network
    eta = Var(Symbol("eta"), file.learning_rate)
    equations = []
    for layer in range(network.num_layers - 1, -1, -1):
        params = (file.weights[layer], file.biases[layer])
        for symbol, index in _parameters(file, layer):
            old = Var(symbol, _lookup(params, index))
            new = Var(symbol._replace(updated=True), _lookup(updated[layer], index))
            trains = (
                network.train_weights[layer]
                if index[0] == "w"
                else network.train_biases[layer]
            )
            if trains:
                gradient = Partial(Symbol("E"), symbol, _lookup(grads[layer], index))
                rhs = Op("sub", (old, Op("mul", (eta, gradient))))
                equations.append(Equation(new, rhs, new.value))
            else:
                equations.append(Equation(new, old, new.value, note="frozen"))
    return Section("update", None, None, tuple(equations))


# Delta form -----------------------------------------------------------------------


def _layer_table(
    file: NetworkFile, examples: list[_Example], grads, updated, layer: int
) -> LayerTable:
    network = file.network
    names = file.names.neurons[layer]
    top = network.num_layers - 1
    elementwise = layer != top or output_form(file) == ELEMENTWISE
    rows = []
    for example in examples:
        if layer == top:
            dE_dout = example.dE_dout
            dout_dnet = example.dout_dnet if elementwise else None
        else:
            dE_dout = example.deltas[layer + 1] @ file.weights[layer + 1]
            dout_dnet = example.slopes[layer]
        for j, name in enumerate(names):
            rows.append(
                NeuronRow(
                    example=example.number,
                    neuron=name,
                    net=float(example.nets[layer][j]),
                    out=float(example.outs[layer][j]),
                    dE_dout=None
                    if dE_dout is None or not elementwise
                    else float(dE_dout[j]),
                    dout_dnet=None if dout_dnet is None else float(dout_dnet[j]),
                    delta=float(example.deltas[layer][j]),
                )
            )

    params = (file.weights[layer], file.biases[layer])
    tables = []
    shared = None
    for j, name in enumerate(names):
        parameter_rows = []
        for symbol, index in _parameters(file, layer):
            if index[0] == "w" and index[1] != j:
                continue
            if index[0] == "b" and (len(index) == 1 or index[1] != j):
                continue
            parameter_rows.append(
                _parameter_row(file, layer, symbol, index, params, grads, updated)
            )
        tables.append(NeuronTable(name, tuple(parameter_rows)))
    if network.shared_bias[layer]:
        shared = _parameter_row(
            file, layer, _bias(file, layer, 0), ("b",), params, grads, updated
        )
    return LayerTable(layer, tuple(rows), tuple(tables), shared)


def _parameter_row(file, layer, symbol, index, params, grads, updated) -> ParameterRow:
    network = file.network
    trains = (
        network.train_weights[layer] if index[0] == "w" else network.train_biases[layer]
    )
    return ParameterRow(
        name=symbol.name,
        value=_lookup(params, index),
        gradient=_lookup(grads[layer], index),
        updated=_lookup(updated[layer], index),
        trains=trains,
    )
