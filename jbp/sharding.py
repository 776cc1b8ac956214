"""Data parallelism with JAX's own sharding: a one-axis mesh named ``data``.

The examples axis (axis 0) of every batch array is split across the devices of the
mesh, and the parameters and optimiser state are replicated on every device. A
function compiled with ``jax.jit`` then runs as one program on all devices: XLA
partitions the forward and backward passes by example and sums the gradient of the
replicated parameters across devices with an all-reduce that it inserts itself.
There is no ``pmap`` and no hand-written collective.

One device is a mesh of size 1, reached through the same calls.

A batch whose size does not divide by the device count is rejected by
:func:`shard_batch`. :func:`pad_batch` pads it with zero rows up to the next
multiple and returns a mask that is ``False`` on them. :func:`masked_loss_value`
averages the loss over the unmasked examples only, so a padded example adds nothing
to the loss or to its gradient.

Example:
    >>> import jax.numpy as jnp
    >>> from jbp.sharding import data_mesh, pad_batch, shard_batch
    >>> mesh = data_mesh()
    >>> (x,), mask = pad_batch((jnp.ones((5, 2)),), mesh.size)
    >>> x, mask = shard_batch(mesh, (x, mask))
    >>> int(mask.sum())
    5
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jbp.errors import ValidationError
from jbp.losses import get_loss
from jbp.network import Network, Params, forward_trace

Array = jax.Array

DATA_AXIS = "data"
"""The name of the mesh axis that the examples are split along."""


def data_mesh(num_devices: int | None = None) -> Mesh:
    """Build a one-axis mesh named ``data`` over the first ``num_devices`` devices.

    Args:
        num_devices: how many devices to use; by default every device JAX sees
            (``jax.devices()``, which spans every process of a multi-process run).

    Returns:
        A mesh whose ``data`` axis has ``num_devices`` entries. Its axis type is
        ``Auto``, so that XLA propagates shardings through unannotated code.

    Raises:
        ValidationError: if ``num_devices`` is not between 1 and the device count.
    """
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if (
        isinstance(num_devices, bool)
        or not isinstance(num_devices, (int, np.integer))
        or not 1 <= num_devices <= len(devices)
    ):
        raise ValidationError(
            f"num_devices is {num_devices!r}, but JAX sees {len(devices)} "
            f"{devices[0].platform} device(s); pass a whole number from 1 to "
            f"{len(devices)}, or split the CPU into N devices by setting "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts"
        )
    return jax.make_mesh(
        (int(num_devices),),
        (DATA_AXIS,),
        axis_types=(AxisType.Auto,),
        devices=devices[:num_devices],
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Return the sharding that splits axis 0 of an array across the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Return the sharding that keeps a whole copy of an array on every device."""
    return NamedSharding(mesh, PartitionSpec())


def _examples(batch: Any) -> int:
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValidationError("batch contains no arrays; pass at least one array")
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = [tuple(np.shape(leaf)) for leaf in leaves]
        raise ValidationError(
            f"batch arrays have shapes {shapes}; every array needs the same number "
            "of examples on axis 0"
        )
    return sizes.pop()


def pad_batch(batch: Any, multiple: int, mask: Any = None) -> tuple[Any, Array]:
    """Pad every array of ``batch`` with zero rows to a multiple of ``multiple``.

    Zero rows keep the padded examples finite (and make padded integer labels the
    valid label 0), so that a masked loss and its gradient stay finite.

    Args:
        batch: a pytree of arrays that share the examples axis 0.
        multiple: the size the padded batch must divide by, usually ``mesh.size``.
        mask: a boolean array of shape ``(examples,)`` marking the real examples
            of a batch that is already padded; by default every example is real.

    Returns:
        The padded batch and its mask, ``True`` on real examples and ``False`` on
        padding.

    Raises:
        ValidationError: if ``multiple`` is not a whole number of at least 1, the
            arrays disagree on the number of examples, or ``mask`` has the wrong
            shape.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, (int, np.integer)):
        raise ValidationError(f"multiple must be a whole number, got {multiple!r}")
    if multiple < 1:
        raise ValidationError(f"multiple must be at least 1, got {multiple}")
    examples = _examples(batch)
    if mask is None:
        mask = jnp.ones((examples,), dtype=bool)
    mask = jnp.asarray(mask)
    if mask.shape != (examples,) or mask.dtype != jnp.bool_:
        raise ValidationError(
            f"mask has shape {mask.shape} and dtype {mask.dtype}; expected a bool "
            f"array of shape ({examples},), one entry per example"
        )

    padding = -examples % multiple

    def pad(array: Any) -> Array:
        array = jnp.asarray(array)
        widths = [(0, padding)] + [(0, 0)] * (array.ndim - 1)
        return jnp.pad(array, widths)

    return jax.tree.map(pad, batch), pad(mask)


def _put(tree: Any, sharding: NamedSharding) -> Any:
    """Apply ``jax.device_put`` to every leaf, PRNG keys through their key data.

    jax 0.10.2 rejects a typed key put onto devices of several processes, but
    accepts its key data.
    """

    def put(leaf: Any) -> Any:
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            data = jax.device_put(jax.random.key_data(leaf), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return jax.device_put(leaf, sharding)

    return jax.tree.map(put, tree)


def shard_batch(mesh: Mesh, batch: Any) -> Any:
    """Place every array of ``batch`` on the mesh, split along the examples axis.

    In a multi-process run every process passes the whole global batch, and each
    keeps the rows of its own devices.

    Raises:
        ValidationError: if the arrays disagree on the number of examples, or that
            number does not divide by the number of devices; :func:`pad_batch`
            makes it divide.
    """
    examples = _examples(batch)
    if examples % mesh.size:
        raise ValidationError(
            f"the batch has {examples} examples, which does not divide across "
            f"{mesh.size} devices; pad it with jbp.pad_batch(batch, {mesh.size}) "
            "and train on jbp.masked_loss_value, or pick a batch size that is a "
            f"multiple of {mesh.size}"
        )
    return _put(batch, batch_sharding(mesh))


def replicate(mesh: Mesh, tree: Any) -> Any:
    """Place a whole copy of every array of ``tree`` on every device of the mesh.

    Use it for the parameters, the optimiser state and PRNG keys. Python scalars
    in ``tree`` become JAX arrays, like any value ``jax.device_put`` receives.
    """
    return _put(tree, replicated_sharding(mesh))


def constrain_batch(mesh: Mesh, batch: Any) -> Any:
    """Mark every array of ``batch`` as split along the examples axis, under jit.

    Call it inside a jitted step on a batch that is computed there (sliced from a
    data set, for example), so that XLA partitions the work by example instead of
    choosing a layout of its own. Arrays placed by :func:`shard_batch` already carry
    this sharding.
    """
    return jax.lax.with_sharding_constraint(batch, batch_sharding(mesh))


def masked_loss_value(
    network: Network,
    params: Params,
    x: Array,
    t: Array,
    mask: Array,
    loss: str = "half_sse",
) -> Array:
    """Compute the mean loss over the examples where ``mask`` is ``True``.

    ``E = sum_n mask_n E_n / sum_n mask_n``. On a batch from :func:`pad_batch` this
    is the loss of the unpadded batch, up to the order of the float sums, and its
    gradient is that batch's gradient. A masked example's loss is replaced by 0
    before the sum, so it contributes nothing, even if it is large.

    Args:
        network: the network description.
        params: one :class:`~jbp.network.Dense` record per layer.
        x: inputs of shape ``(examples, n_in)``.
        t: targets of shape ``(examples, n_out)``, or integer labels.
        mask: bool array of shape ``(examples,)``, ``True`` on real examples.
        loss: the name of the loss.

    Returns:
        The scalar loss; NaN if every example is masked.
    """
    trace = forward_trace(network, params, x)
    per_example = get_loss(loss).per_example(trace.nets[-1], trace.outs[-1], t)
    total = jnp.sum(jnp.where(mask, per_example, 0))
    return total / jnp.sum(mask, dtype=per_example.dtype)
