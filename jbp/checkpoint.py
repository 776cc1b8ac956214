"""Checkpoints of any pytree of training state, written with Orbax.

A checkpoint is the directory ``<directory>/<step>/`` with two Orbax items:

- ``state``: the leaves of the tree in flattening order. A typed PRNG key is stored
  as its key data (``jax.random.key_data``) and wrapped again on restore.
- ``layout``: a JSON record of every leaf's path, dtype and shape, and of each PRNG
  key's implementation, so that a restore can check them before reading any data.

Restoring takes a template ``like`` with the structure of the saved tree, for
example the freshly initialised state of the same run. The result has that
structure, and every leaf keeps the dtype it was saved with: a leaf whose path or
dtype differs from the saved one raises instead of being cast. Shapes come from the
checkpoint, so a loss history saved after 500 steps restores into a template that
contains an empty history.

Orbax writes each checkpoint into a temporary directory
(``<step>.orbax-checkpoint-tmp`` in orbax-checkpoint 0.12.8) and renames it to
``<step>`` only once every file is written. A process killed during a save
therefore leaves the earlier checkpoints as they were, and the half-written one is
never listed or restored.

Orbax (the ``orbax-checkpoint`` package, in the ``checkpoint`` extra) is imported
on first use, so ``import jbp`` does not pay for it.

Example:
    >>> import tempfile
    >>> import jax.numpy as jnp
    >>> from jbp.checkpoint import restore_checkpoint, save_checkpoint
    >>> state = {"step": jnp.int32(16_777_217), "w": jnp.zeros(3)}
    >>> with tempfile.TemporaryDirectory() as directory:
    ...     _ = save_checkpoint(directory, 1, state)
    ...     int(restore_checkpoint(directory, like=state)["step"])
    16777217
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import numpy as np

from jbp.errors import ValidationError

STATE_ITEM = "state"
LAYOUT_ITEM = "layout"
LAYOUT_VERSION = 1
"""The version of the ``layout`` record. A restore rejects any other version."""

_SCALAR_TYPES = (bool, int, float)


def _orbax():
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:
        raise ModuleNotFoundError(
            "jbp.checkpoint needs orbax-checkpoint, which is not installed; "
            "install it with: pip install 'jbp[checkpoint]'"
        ) from error
    return ocp


def _is_key(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _describe_leaf(path: str, leaf: Any) -> dict[str, Any]:
    """Record what a restore needs to check one leaf."""
    if _is_key(leaf):
        data = jax.random.key_data(leaf)
        return {
            "path": path,
            "kind": "prng_key",
            "impl": str(jax.random.key_impl(leaf)),
            "dtype": str(data.dtype),
            "shape": list(data.shape),
        }
    if isinstance(leaf, _SCALAR_TYPES):
        return {"path": path, "kind": type(leaf).__name__}
    if (
        isinstance(leaf, jax.Array)
        and jax.process_count() > 1
        and leaf.is_fully_addressable
    ):
        raise ValidationError(
            f"state leaf {path} lives on the devices of this process alone, which "
            "Orbax cannot save in a run of several processes; place the state on "
            "the mesh first, for example with jbp.replicate(mesh, state)"
        )
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        kind = "jax" if isinstance(leaf, jax.Array) else "numpy"
        return {
            "path": path,
            "kind": kind,
            "dtype": str(leaf.dtype),
            "shape": list(np.shape(leaf)),
        }
    raise ValidationError(
        f"state leaf {path} is a {type(leaf).__name__}; a checkpoint stores JAX or "
        "NumPy arrays, PRNG keys and Python bool, int or float values, so convert "
        "that leaf to one of them"
    )


def _layout(state: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """Describe every leaf of ``state`` and return the leaves as Orbax stores them."""
    entries, leaves = [], []
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        entries.append(_describe_leaf(jax.tree_util.keystr(key_path), leaf))
        if _is_key(leaf):
            leaf = jax.random.key_data(leaf)
        elif isinstance(leaf, np.generic):
            leaf = np.asarray(leaf)
        leaves.append(leaf)
    return entries, leaves


def _check_directory(directory: Any) -> pathlib.Path:
    if not isinstance(directory, (str, pathlib.PurePath)) or not str(directory):
        raise ValidationError(
            f"checkpoint directory must be a non-empty path, got {directory!r}"
        )
    return pathlib.Path(directory).absolute()


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValidationError(
            f"checkpoint step must be a whole number of 0 or more, got {step!r}"
        )
    return int(step)


def _manager(directory: pathlib.Path, keep: int | None = None, *, create: bool):
    ocp = _orbax()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        create=create,
        enable_async_checkpointing=False,
    )
    return ocp.CheckpointManager(
        directory, options=options, item_names=(STATE_ITEM, LAYOUT_ITEM)
    )


def checkpoint_steps(directory: Any) -> list[int]:
    """List the steps of the complete checkpoints in ``directory``, oldest first.

    Half-written checkpoints of a killed save are not listed. A directory that does
    not exist contains no checkpoints.
    """
    directory = _check_directory(directory)
    if not directory.is_dir():
        return []
    with _manager(directory, create=False) as manager:
        return sorted(manager.all_steps())


def save_checkpoint(
    directory: Any, step: int, state: Any, *, keep: int | None = 3
) -> pathlib.Path:
    """Write ``state`` as the checkpoint for ``step``, then keep only the newest.

    The call returns once the checkpoint is complete on disk. In a run of several
    processes every process calls it, with the state placed on the mesh (for
    example by :func:`jbp.replicate`), and ``directory`` is on a file system that
    every process reaches.

    Args:
        directory: the directory of this run's checkpoints; created if missing.
        step: the label of the checkpoint, usually the training step; it must be
            larger than that of every checkpoint already in ``directory``.
        state: any pytree of JAX or NumPy arrays, typed PRNG keys and Python
            scalars, such as ``{"params": ..., "opt_state": ..., "key": ...,
            "step": jnp.int32(s), "epoch": e, "losses": ...}``.
        keep: how many of the newest checkpoints to keep, counting this one;
            ``None`` keeps every checkpoint.

    Returns:
        The directory of the new checkpoint.

    Raises:
        ValidationError: if ``keep`` is not at least 1, a leaf has an unsupported
            type or sits on one process's devices alone in a run of several
            processes, or ``step`` is not newer than the latest checkpoint.
    """
    directory = _check_directory(directory)
    step = _check_step(step)
    if keep is not None and (
        isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1
    ):
        raise ValidationError(
            f"keep must be a whole number of 1 or more, or None to keep every "
            f"checkpoint, got {keep!r}"
        )
    entries, leaves = _layout(state)
    layout = {"version": LAYOUT_VERSION, "leaves": entries}

    ocp = _orbax()
    with _manager(directory, keep, create=True) as manager:
        latest = manager.latest_step()
        if latest is not None and step <= latest:
            raise ValidationError(
                f"checkpoint step {step} is not newer than the latest checkpoint "
                f"{directory / str(latest)}; save with a step above {latest}, or "
                "use a new directory for a new run"
            )
        saved = manager.save(
            step,
            args=ocp.args.Composite(
                **{
                    STATE_ITEM: ocp.args.StandardSave(leaves),
                    LAYOUT_ITEM: ocp.args.JsonSave(layout),
                }
            ),
        )
        manager.wait_until_finished()
    if not saved:
        raise RuntimeError(f"Orbax did not save step {step} in {directory}")
    return directory / str(step)


def _read_layout(manager, path: pathlib.Path) -> list[dict[str, Any]]:
    ocp = _orbax()
    step = int(path.name)
    try:
        restored = manager.restore(
            step, args=ocp.args.Composite(**{LAYOUT_ITEM: ocp.args.JsonRestore()})
        )
        layout = restored[LAYOUT_ITEM]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _corrupt(path, error) from error
    if not isinstance(layout, dict) or layout.get("version") != LAYOUT_VERSION:
        raise _corrupt(
            path,
            f"layout record {json.dumps(layout)[:80]} is not version {LAYOUT_VERSION}",
        )
    return layout["leaves"]


def _corrupt(path: pathlib.Path, reason: Any) -> ValidationError:
    # TensorStore appends its whole JSON spec to a message, so keep the part before.
    reason = str(reason).split(" [tensorstore_spec", 1)[0]
    return ValidationError(
        f"checkpoint {path} is corrupt or incomplete ({reason}); delete that "
        "directory to restore the previous checkpoint, or pass the step of another "
        "checkpoint"
    )


def _check_template(path: pathlib.Path, entries: list[dict], like: Any) -> None:
    """Raise unless ``like`` has the saved paths, kinds and dtypes."""
    expected = [
        _describe_leaf(jax.tree_util.keystr(key_path), leaf)
        for key_path, leaf in jax.tree_util.tree_flatten_with_path(like)[0]
    ]
    saved_paths = [entry["path"] for entry in entries]
    like_paths = [entry["path"] for entry in expected]
    if saved_paths != like_paths:
        missing = sorted(set(saved_paths) - set(like_paths))
        extra = sorted(set(like_paths) - set(saved_paths))
        raise ValidationError(
            f"checkpoint {path} contains leaves {saved_paths[:6]}... that do not match "
            f"the template's (saved but not in the template: {missing[:6]}; in the "
            f"template but not saved: {extra[:6]}); pass like= a tree built the way "
            "the saved state was built"
        )
    for saved, current in zip(entries, expected, strict=True):
        # Shapes may differ: the restore reads the saved shape.
        saved = {field: value for field, value in saved.items() if field != "shape"}
        current = {field: value for field, value in current.items() if field != "shape"}
        if saved != current:
            raise ValidationError(
                f"checkpoint {path} stores leaf {saved['path']} as {saved}, but the "
                f"template has {current}; build the template with the same leaf "
                "types and dtypes as the saved state (float64 leaves need "
                "jax.enable_x64(True))"
            )


def _restore_target(entry: dict[str, Any], leaf: Any) -> Any:
    """Describe the array to read: the saved shape, on the template's devices."""
    if isinstance(leaf, _SCALAR_TYPES):
        return leaf
    shape, dtype = tuple(entry["shape"]), np.dtype(entry["dtype"])
    if isinstance(leaf, jax.Array):
        data = jax.random.key_data(leaf) if _is_key(leaf) else leaf
        return jax.ShapeDtypeStruct(shape, dtype, sharding=data.sharding)
    return np.zeros(shape, dtype)


def _rewrap(entry: dict[str, Any], like: Any, value: Any) -> Any:
    if entry["kind"] == "prng_key":
        return jax.random.wrap_key_data(value, impl=entry["impl"])
    if isinstance(like, np.generic):
        return like.dtype.type(value)
    return value


def restore_checkpoint(directory: Any, like: Any, *, step: int | None = None) -> Any:
    """Read a checkpoint back into a tree shaped like ``like``.

    Arrays are placed with the sharding of the matching leaf of ``like``, so a
    template replicated on a mesh restores replicated on that mesh.

    Args:
        directory: the directory :func:`save_checkpoint` wrote to.
        like: a tree with the structure, leaf types and dtypes of the saved
            state, such as the freshly initialised state of the same run. Its
            values and shapes are not used, but its shardings are.
        step: which checkpoint to read; by default the latest.

    Returns:
        The saved state, with the structure of ``like``.

    Raises:
        ValidationError: if ``directory`` contains no checkpoint or not ``step``, the
            checkpoint is corrupt, or ``like`` does not match what was saved.
    """
    directory = _check_directory(directory)
    if step is not None:
        step = _check_step(step)
    steps = checkpoint_steps(directory)
    if not steps:
        reason = (
            "contains no complete checkpoint" if directory.is_dir() else "is missing"
        )
        raise ValidationError(
            f"checkpoint directory {directory} {reason}; check the path, or train "
            "from the start instead of restoring"
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise ValidationError(
            f"checkpoint directory {directory} has no step {step}; it contains steps "
            f"{steps}, so pass one of them"
        )
    path = directory / str(step)

    ocp = _orbax()
    with _manager(directory, create=False) as manager:
        entries = _read_layout(manager, path)
        _check_template(path, entries, like)
        leaves, treedef = jax.tree.flatten(like)
        targets = [
            _restore_target(entry, leaf)
            for entry, leaf in zip(entries, leaves, strict=True)
        ]
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    **{STATE_ITEM: ocp.args.StandardRestore(targets)}
                ),
            )[STATE_ITEM]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise _corrupt(path, error) from error

    values = [
        _rewrap(entry, leaf, value)
        for entry, leaf, value in zip(entries, leaves, restored, strict=True)
    ]
    return jax.tree.unflatten(treedef, values)
