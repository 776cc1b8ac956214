"""A second, independent implementation of the worked example in plain Python floats.

It follows the classic derivation neuron by neuron, with no arrays, no JAX and no
code shared with jbp, so that agreement with jbp is evidence rather than repetition.
"""

import math

X = (0.05, 0.10)
T = (0.01, 0.99)
HIDDEN_W = [[0.15, 0.20], [0.25, 0.30]]
OUTPUT_W = [[0.40, 0.45], [0.50, 0.55]]
B1, B2 = 0.35, 0.60
ETA = 0.5


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def _bias(b, j):
    return b[j] if isinstance(b, list) else b


def forward(hidden_w, output_w, b1=B1, b2=B2):
    """Return (net_h, out_h, net_o, out_o) as lists; a bias is a number or a list."""
    net_h = [
        hidden_w[j][0] * X[0] + hidden_w[j][1] * X[1] + _bias(b1, j) for j in range(2)
    ]
    out_h = [sigmoid(n) for n in net_h]
    net_o = [
        output_w[k][0] * out_h[0] + output_w[k][1] * out_h[1] + _bias(b2, k)
        for k in range(2)
    ]
    out_o = [sigmoid(n) for n in net_o]
    return net_h, out_h, net_o, out_o


def total_error(hidden_w, output_w, b1=B1, b2=B2):
    out_o = forward(hidden_w, output_w, b1, b2)[3]
    return sum(0.5 * (T[k] - out_o[k]) ** 2 for k in range(2))


def step(hidden_w, output_w, layerwise, b1=B1, b2=B2, train_bias=None):
    """One SGD step; ``layerwise`` carries hidden deltas through updated weights.

    ``train_bias`` is None (biases fixed), "shared" or "per_neuron". Returns
    (hidden_w, output_w, b1, b2, error_before).
    """
    _, out_h, _, out_o = forward(hidden_w, output_w, b1, b2)
    error = sum(0.5 * (T[k] - out_o[k]) ** 2 for k in range(2))
    delta_o = [(out_o[k] - T[k]) * out_o[k] * (1 - out_o[k]) for k in range(2)]
    new_output = [
        [output_w[k][j] - ETA * delta_o[k] * out_h[j] for j in range(2)]
        for k in range(2)
    ]
    carry = new_output if layerwise else output_w
    delta_h = [
        sum(delta_o[k] * carry[k][j] for k in range(2)) * out_h[j] * (1 - out_h[j])
        for j in range(2)
    ]
    new_hidden = [
        [hidden_w[j][i] - ETA * delta_h[j] * X[i] for i in range(2)] for j in range(2)
    ]
    if train_bias == "shared":
        b1 = b1 - ETA * sum(delta_h)
        b2 = b2 - ETA * sum(delta_o)
    elif train_bias == "per_neuron":
        b1 = [b1[j] - ETA * delta_h[j] for j in range(2)]
        b2 = [b2[k] - ETA * delta_o[k] for k in range(2)]
    return new_hidden, new_output, b1, b2, error


def run(steps, layerwise):
    """Train ``steps`` steps; return (hidden_w, output_w, per-step errors)."""
    hidden_w, output_w = HIDDEN_W, OUTPUT_W
    errors = []
    for _ in range(steps):
        hidden_w, output_w, _, _, error = step(hidden_w, output_w, layerwise)
        errors.append(error)
    return hidden_w, output_w, errors
