"""Helpers for the explain and check tests: random network files and an evaluator.

The evaluator recomputes a derivation's expression trees with Python's math module,
sharing no code with jbp, so that agreement checks each printed equation.
"""

import math

from hypothesis import strategies as st

from jbp.derivation import Const, Op, Partial, Var

FUNCTIONS = {
    "exp": math.exp,
    "log": math.log,
    "tanh": math.tanh,
    "max0": lambda a: max(0.0, a),
    "positive": lambda a: 1.0 if a > 0 else 0.0,
    "Phi": lambda a: 0.5 * (1.0 + math.erf(a / math.sqrt(2.0))),
    "phi": lambda a: math.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi),
    "neg": lambda a: -a,
    "square": lambda a: a * a,
}


def evaluate(expr):
    """Compute an expression tree from its leaves' values."""
    if isinstance(expr, (Var, Partial, Const)):
        return expr.value
    assert isinstance(expr, Op)
    args = [evaluate(arg) for arg in expr.args]
    if expr.op == "add":
        return math.fsum(args)
    if expr.op == "sub":
        return args[0] - args[1]
    if expr.op == "mul":
        return math.prod(args)
    if expr.op == "div":
        return args[0] / args[1]
    if expr.op == "mean":
        return math.fsum(args) / len(args)
    return FUNCTIONS[expr.op](*args)


# (output activation, loss) pairs that jbp accepts.
OUTPUTS = [
    ("sigmoid", "half_sse"),
    ("tanh", "mse"),
    ("identity", "half_sse"),
    ("softmax", "half_sse"),
    ("softmax", "mse"),
    ("softmax", "cross_entropy"),
    ("identity", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
    ("identity", "binary_cross_entropy"),
]
weights_value = st.floats(-2.0, 2.0, allow_nan=False).map(lambda v: round(v, 3))


@st.composite
def network_files(draw, hidden=("sigmoid", "tanh", "relu", "gelu", "identity")):
    """Draw a small network file as a dict: 1-3 layers of 1-3 neurons, any loss."""
    depth = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 3)) for _ in range(depth + 1)]
    output, loss = draw(st.sampled_from(OUTPUTS))
    if output == "softmax" or loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    layers = []
    for i in range(depth):
        n_in, n_out = sizes[i], sizes[i + 1]
        activation = output if i == depth - 1 else draw(st.sampled_from(hidden))
        weights = [[draw(weights_value) for _ in range(n_in)] for _ in range(n_out)]
        if draw(st.booleans()):
            bias = draw(weights_value)
        else:
            bias = [draw(weights_value) for _ in range(n_out)]
        layers.append(
            {
                "activation": activation,
                "weights": weights,
                "bias": bias,
                "train": {"weights": True, "bias": draw(st.booleans())},
            }
        )
    batch = draw(st.sampled_from([None, 1, 2, 3]))
    count = 1 if batch is None else batch
    xs = [[draw(weights_value) for _ in range(sizes[0])] for _ in range(count)]
    ts = []
    labels = draw(st.booleans())
    for _ in range(count):
        if loss == "cross_entropy" and labels:
            ts.append(draw(st.integers(0, sizes[-1] - 1)))
        elif loss == "cross_entropy":
            raw = [draw(st.integers(0, 4)) for _ in range(sizes[-1])]
            raw[0] += 1
            ts.append([r / sum(raw) for r in raw])
        else:
            ts.append([draw(st.floats(0.0, 1.0)) for _ in range(sizes[-1])])
    return {
        "layers": layers,
        "x": xs[0] if batch is None else xs,
        "t": ts[0] if batch is None else ts,
        "loss": loss,
        "learning_rate": draw(st.sampled_from([0.1, 0.5, 1.0])),
    }
