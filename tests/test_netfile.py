"""Network files: what they accept, and one clear error for everything else."""

import copy
import json
from importlib import resources

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jbp
from jbp.errors import ValidationError
from jbp.netfile import parse_network

WORKED = json.loads(
    resources.files("jbp").joinpath("networks", "worked_example.json").read_text()
)


def _worked(**changes):
    data = copy.deepcopy(WORKED)
    data.update(changes)
    return data


def test_integer_weights_are_floats():
    data = _worked()
    data["layers"][1]["weights"] = [[0, 1], [1, 0]]
    file = parse_network(data)
    assert file.weights[1].dtype == np.float64
    np.testing.assert_array_equal(file.weights[1], [[0.0, 1.0], [1.0, 0.0]])


def test_toml_reads_like_json(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(
        'x = [0.05, 0.10]\nt = [0.01, 0.99]\nloss = "half_sse"\n'
        '[[layers]]\nactivation = "sigmoid"\nweights = [[0.15, 0.20], [0.25, 0.30]]\n'
        "bias = 0.35\n"
        '[[layers]]\nactivation = "sigmoid"\nweights = [[0.40, 0.45], [0.50, 0.55]]\n'
        "bias = 0.60\n"
    )
    file = jbp.read_network_file(path)
    built_in = jbp.read_network_file()
    for ours, theirs in zip(file.weights, built_in.weights, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert file.names.weights[1] == (("w5", "w6"), ("w7", "w8"))


def test_cross_entropy_targets_labels_or_distributions():
    data = json.loads(json.dumps(WORKED))
    data["layers"][1]["activation"] = "softmax"
    data["loss"] = "cross_entropy"
    data["t"] = [0, 1]
    assert parse_network(data).t.tolist() == [0.0, 1.0]
    data["t"] = 1
    assert parse_network(data).t.dtype == np.int32
    data["x"], data["t"] = [[0.05, 0.1], [0.2, 0.3]], [1, 0]
    assert parse_network(data).t.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["layers"][1].update(weights=[[0.4, 0.45, 0.1], [0.5, 0.55, 0]]),
            "layers[1].weights has shape (2, 3); expected (2, 2)",
        ),
        (
            lambda d: d["layers"][0].update(activation="swish"),
            'unknown activation "swish"; expected one of: sigmoid, tanh, relu',
        ),
        (lambda d: d.update(loss="hinge"), 'unknown loss "hinge"; expected one of: '),
        (lambda d: d.update(loss=["half_sse"]), 'unknown loss ["half_sse"]'),
        (lambda d: d.update(x=[0.05, float("nan")]), "x[1] is NaN; every number"),
        (lambda d: d["layers"][0].update(bias=10**400), "layers[0].bias is 1000"),
        (lambda d: d.update(t=[0.01, 0.99, 0.5]), "t has 3 numbers per example, but"),
        (lambda d: d.update(t=[[0.01, 0.99]], x=[[0.05, 0.1]] * 2), "t has 1 examples"),
        (lambda d: d.update(learning_rate=True), "learning_rate must be a number"),
        (lambda d: d.update(learning_rate="0.5"), "learning_rate must be a number"),
        (lambda d: d.update(learing_rate=0.5), 'unknown key "learing_rate"'),
        (lambda d: d["layers"][0].update(neurons=["h1", "o1"]), "'o1' is used twice"),
        (lambda d: d["layers"][0].update(neurons=["h 1", "h2"]), "must be a name"),
        (lambda d: d.update(layers=[]), "'layers' must be a non-empty list"),
        (lambda d: d.update(t=0), "t must be a non-empty list of numbers"),
    ],
    ids=[
        "weight-shape",
        "unknown-activation",
        "unknown-loss",
        "unhashable-loss",
        "nan",
        "huge-integer",
        "target-width",
        "target-count",
        "bool-rate",
        "text-rate",
        "misspelt-key",
        "duplicate-name",
        "bad-name",
        "no-layers",
        "scalar-target",
    ],
)
def test_bad_fields_raise_one_line(change, message):
    data = _worked()
    change(data)
    with pytest.raises(ValidationError) as info:
        parse_network(data, "net.json")
    text = str(info.value)
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("t", "message"),
    [
        ([0.5, 0.4], "probability distributions"),
        ([-0.5, 1.5], "contains the negative value -0.5"),
        (2.5, "must be an integer class label"),
        (3, "is class 3, but the output layer has 2 neurons"),
    ],
    ids=["distribution-sum", "negative", "fractional-label", "label-range"],
)
def test_cross_entropy_targets_must_fit(t, message):
    data = _worked(loss="cross_entropy", t=t)
    data["layers"][1]["activation"] = "softmax"
    with pytest.raises(ValidationError, match=message):
        parse_network(data)


def test_loss_must_fit_output_activation():
    with pytest.raises(ValidationError, match="needs a softmax or identity output"):
        parse_network(_worked(loss="cross_entropy", t=1))


def test_invalid_json_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "x": [0.05,\n  ]\n}\n')
    with pytest.raises(ValidationError, match=r"invalid JSON at line 3, column 3"):
        jbp.read_network_file(path)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ValidationError, match="not found"):
        jbp.read_network_file(tmp_path / "absent.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*prefix, i))


PATHS = list(_paths(WORKED))[1:]


def _parse_or_reject(data):
    try:
        result = parse_network(data)
    except ValidationError as error:
        assert "\n" not in str(error)
    else:
        assert isinstance(result, jbp.NetworkFile)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=json_values)
def test_any_json_value_parses_or_raises(data):
    _parse_or_reject(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=json_values)
def test_any_field_replaced_parses_or_raises(path, value):
    data = copy.deepcopy(WORKED)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    _parse_or_reject(data)


def test_duplicate_json_key_is_rejected(tmp_path):
    path = tmp_path / "net.json"
    path.write_text('{"loss": "half_sse", "loss": "mse", "layers": []}')
    with pytest.raises(ValidationError, match="the key 'loss' appears twice"):
        jbp.read_network_file(path)


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ValidationError, match="is a folder; give the path"):
        jbp.read_network_file(tmp_path)


def test_shared_bias_name_without_bias():
    data = json.loads(
        resources.files("jbp").joinpath("networks", "worked_example.json").read_text()
    )
    del data["layers"][0]["bias"]
    with pytest.raises(ValidationError, match="names a shared bias 'b1' but has no"):
        parse_network(data)


def test_float64_params_need_x64():
    example = jbp.read_network_file()
    with pytest.raises(ValidationError, match="float64 needs JAX's 64-bit mode"):
        example.params()
    assert example.params(np.float32)[0].w.dtype == np.float32
