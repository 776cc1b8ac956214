"""Data for minibatch training: held-out splits, per-epoch shuffles and batches.

Every epoch visits the training examples in a fresh order drawn from a key that is
derived from the epoch index alone, ``jax.random.fold_in(key, epoch)``. The order of
epoch 7 is therefore the same whether training ran straight through or stopped after
epoch 5 and resumed from a checkpoint.

The remainder rule: with ``n`` examples and batch size ``B``, an epoch has
``ceil(n / B)`` batches. When ``B`` does not divide ``n``, the last batch is padded
with masked slots that point at real examples but carry weight 0. The loss of every
batch is the sum of its real examples' losses divided by ``B``, the nominal batch
size, so every example carries the same weight ``1/B`` in its step. No example is
dropped, repeated or given more weight than the others.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jbp.errors import ValidationError

Array = jax.Array


class Batches(NamedTuple):
    """One epoch's batches as indices into the training set.

    Attributes:
        indices: shape ``(num_batches, batch_size)``; the examples of each batch.
        mask: shape ``(num_batches, batch_size)``; True for a real example, False
            for a padding slot of the last batch.
    """

    indices: Array
    mask: Array


def num_batches(examples: int, batch_size: int) -> int:
    """Count the batches of one epoch: ``ceil(examples / batch_size)``."""
    return -(-examples // batch_size)


def epoch_key(key: Array, epoch: Array | int) -> Array:
    """Derive the shuffle key of ``epoch`` from the run's data key."""
    return jax.random.fold_in(key, epoch)


def epoch_batches(
    key: Array, epoch: Array | int, examples: int, batch_size: int
) -> Batches:
    """Shuffle ``examples`` indices for ``epoch`` and cut them into batches.

    Works on traced ``epoch`` values, so it runs inside ``jax.jit`` and ``lax.scan``.
    Padding slots of the last batch repeat the first indices of the permutation, and
    their mask is False (see the module docstring for the remainder rule).

    Args:
        key: the run's data key (a typed key or raw ``uint32`` key data).
        epoch: the epoch index, from 0.
        examples: the number of training examples ``n`` (static).
        batch_size: the nominal batch size ``B`` (static).

    Returns:
        The indices and mask, each of shape ``(ceil(n / B), B)``.
    """
    order = jax.random.permutation(epoch_key(key, epoch), examples)
    count = num_batches(examples, batch_size)
    padding = count * batch_size - examples
    indices = jnp.concatenate([order, order[:padding]])
    mask = jnp.arange(count * batch_size) < examples
    return Batches(indices.reshape(count, batch_size), mask.reshape(count, batch_size))


class Split(NamedTuple):
    """A training set and a held-out set."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray


def train_test_split(
    x: np.ndarray,
    t: np.ndarray,
    test_fraction: float,
    seed: int,
    stratify: bool = True,
) -> Split:
    """Split examples into a training and a held-out set, reproducibly.

    With ``stratify`` (integer class labels ``t`` only), every class is split on its
    own, so each class keeps its share in both sets: class ``c`` with ``n_c``
    examples puts ``round(test_fraction * n_c)`` of them in the held-out set.

    Args:
        x: inputs, one example per row.
        t: targets, one per row of ``x``.
        test_fraction: the share of examples held out, strictly between 0 and 1.
        seed: seeds the NumPy generator that picks the held-out examples.
        stratify: split each class of integer labels ``t`` separately.

    Returns:
        The two sets, each in the order of the original rows.

    Raises:
        ValidationError: if the fraction is outside (0, 1), ``x`` and ``t`` differ in
            length, or either set would be empty.
    """
    x, t = np.asarray(x), np.asarray(t)
    if not 0.0 < test_fraction < 1.0:
        raise ValidationError(
            f"test_fraction must lie strictly between 0 and 1, got {test_fraction}"
        )
    if len(x) != len(t):
        raise ValidationError(
            f"x has {len(x)} rows but t has {len(t)}; give one target per example"
        )
    rng = np.random.default_rng(seed)
    if stratify:
        if not np.issubdtype(t.dtype, np.integer) or t.ndim != 1:
            raise ValidationError(
                "stratify=True needs integer class labels of shape (n,), got "
                f"dtype {t.dtype} and shape {t.shape}; pass stratify=False"
            )
        groups = [np.flatnonzero(t == label) for label in np.unique(t)]
    else:
        groups = [np.arange(len(t))]
    held_out = []
    for group in groups:
        count = round(test_fraction * len(group))
        held_out.append(rng.permutation(group)[:count])
    test = np.zeros(len(t), dtype=bool)
    test[np.concatenate(held_out)] = True
    if test.all() or not test.any():
        raise ValidationError(
            f"test_fraction={test_fraction} leaves one set empty for {len(t)} "
            "examples; choose a fraction nearer 0.5 or use more data"
        )
    return Split(x[~test], t[~test], x[test], t[test])
