"""Per-epoch shuffles, the remainder padding and held-out splits."""

import jax
import numpy as np
import pytest

from jbp import ValidationError, epoch_batches, num_batches, train_test_split


@pytest.mark.parametrize(
    ("examples", "batch_size"), [(12, 4), (13, 4), (5, 5), (7, 1)], ids=str
)
def test_each_epoch_covers_every_example_once(examples, batch_size):
    key = jax.random.key(3)
    for epoch in range(4):
        batches = epoch_batches(key, epoch, examples, batch_size)
        indices, mask = np.asarray(batches.indices), np.asarray(batches.mask)
        count = -(-examples // batch_size)
        assert indices.shape == (count, batch_size)
        assert mask.sum() == examples
        np.testing.assert_array_equal(np.sort(indices[mask]), np.arange(examples))


def test_padding_ends_last_batch():
    batches = epoch_batches(jax.random.key(0), 0, 10, 4)
    mask = np.asarray(batches.mask)
    np.testing.assert_array_equal(mask[:2], True)
    np.testing.assert_array_equal(mask[2], [True, True, False, False])
    assert num_batches(10, 4) == 3


def test_shuffles_differ_across_epochs():
    key = jax.random.key(7)
    orders = [
        tuple(np.asarray(epoch_batches(key, epoch, 20, 5).indices).ravel())
        for epoch in range(6)
    ]
    assert len(set(orders)) == 6


def test_shuffle_depends_on_epoch_not_history():
    key = jax.random.key(7)
    direct = epoch_batches(key, 5, 20, 5).indices
    expected = jax.random.permutation(jax.random.fold_in(key, 5), 20).reshape(4, 5)
    np.testing.assert_array_equal(direct, expected)


def test_stratified_split_keeps_class_shares():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    x = np.arange(100, dtype=float)[:, None]
    split = train_test_split(x, labels, 0.2, seed=0)
    assert np.bincount(split.t_test).tolist() == [10, 6, 4]
    assert np.bincount(split.t_train).tolist() == [40, 24, 16]
    together = np.sort(np.concatenate([split.x_train, split.x_test]).ravel())
    np.testing.assert_array_equal(together, x.ravel())


def test_split_is_reproducible_and_seeded():
    labels = np.repeat(np.arange(2), 50)
    x = np.arange(100, dtype=float)[:, None]
    first = train_test_split(x, labels, 0.2, seed=1)
    again = train_test_split(x, labels, 0.2, seed=1)
    other = train_test_split(x, labels, 0.2, seed=2)
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_test, other.x_test)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"test_fraction": 1.0}, "test_fraction must lie strictly between 0 and 1"),
        ({"t": np.zeros(9, int)}, "x has 10 rows but t has 9"),
        ({"t": np.zeros(10)}, "stratify=True needs integer class labels"),
        ({"test_fraction": 0.01}, "leaves one set empty"),
    ],
    ids=["fraction", "lengths", "float-labels", "empty"],
)
def test_split_rejects_bad_arguments(arguments, message):
    call = {"x": np.zeros((10, 2)), "t": np.zeros(10, int), "test_fraction": 0.5}
    call.update(arguments)
    with pytest.raises(ValidationError, match=message):
        train_test_split(call["x"], call["t"], call["test_fraction"], seed=0)
