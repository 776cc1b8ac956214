"""Minibatch training: epochs and batches in one compiled ``lax.scan`` per chunk.

:func:`fit` trains on a data set for a number of epochs. The epochs run in chunks:
each chunk is one call of a ``jax.jit``-compiled function whose ``lax.scan`` over
epochs contains a ``lax.scan`` over that epoch's batches. Between chunks control
returns to Python, where a callback can draw a progress bar, log a line or save a
checkpoint. Chunks of the same length reuse one compiled program, so a call compiles
the training program at most twice (full chunks and a shorter last chunk), and a
second call with the same shapes, network and optimiser object compiles nothing.

Everything training needs to continue lives in one :class:`TrainState` pytree:
parameters, optimiser state, the data key, the epoch and step counters and the
divergence flag. Shuffles are keyed by the epoch index (see :mod:`jbp.data`), so
training ``N`` epochs, saving the state and training ``N`` more gives the same bits
as ``2N`` epochs in one call.

Divergence: each step checks that its loss and its new parameters are finite. A
chunk in which a step fails is run again from its start with a guard, so the failed
step is not applied and the parameters and optimiser state keep their last finite
values. The remaining steps of the chunk are skipped, and training stops at the
chunk boundary. :func:`fit` then raises :class:`DivergenceError`
carrying the result, or returns it with ``on_divergence="return"``.

Data parallelism: given a ``mesh`` from :func:`jbp.data_mesh`, :func:`fit` keeps
the data set and the state replicated on every device and splits each step's batch
along the mesh's ``data`` axis, so XLA sums the gradient across devices. A batch
size that does not divide by the device count is padded with masked slots up to
the next multiple. Those slots join the last batch's padding under the same rule:
they add nothing to the loss, and the divisor stays the nominal batch size, so the
steps are those of one device up to the order of the float sums.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jbp.data import epoch_batches, num_batches
from jbp.errors import DivergenceError, TrainingInterrupted, ValidationError
from jbp.losses import Loss, get_loss
from jbp.network import Network, Params, forward_trace
from jbp.sharding import DATA_AXIS, constrain_batch, replicate
from jbp.training import with_frozen
from jbp.validation import (
    check_batch_size,
    check_inputs,
    check_learning_rate,
    check_loss_fits,
    check_params,
    check_steps,
    check_targets,
)

Array = jax.Array

Batch = tuple[Array, Array, Array]
"""One step's ``(x, t, mask)``: inputs, targets and the real-example mask."""


class TrainState(NamedTuple):
    """Everything needed to continue training, as one pytree of arrays.

    Attributes:
        params: the parameters, one ``Dense`` record per layer.
        opt_state: the optimiser state, as :func:`init_state` wraps the optimiser.
            With ``optax.inject_hyperparams`` the learning rate lives here.
        key: the data key as raw ``uint32`` key data (``jax.random.key_data``), so
            the state contains plain arrays only; epoch ``e`` shuffles with
            ``fold_in(key, e)``.
        epoch: the number of epochs completed (int32 scalar).
        step: the number of updates applied (int32 scalar).
        finite: False once a step's loss or new parameters were not finite.
        nonfinite_step: the index (from 0) of the first step that was not finite,
            or -1 while training is finite.

    :func:`fit` trains nothing from a state whose ``finite`` is False. To try again
    from the last finite parameters (with a lower learning rate, say), reset it:
    ``state._replace(finite=jnp.ones((), bool), nonfinite_step=jnp.full((), -1,
    jnp.int32))``.
    """

    params: Params
    opt_state: optax.OptState
    key: Array
    epoch: Array
    step: Array
    finite: Array
    nonfinite_step: Array


class History(NamedTuple):
    """Per-epoch and per-step metrics of one :func:`fit` call, as NumPy arrays.

    Attributes:
        epoch: the epoch number each entry ends, counted from 1 over the whole run
            (a resumed run continues the count).
        train_loss: the mean loss over the epoch's examples, each measured in the
            forward pass of its step, before that step's update.
        train_accuracy: the share of the epoch's examples predicted correctly in
            those same forward passes.
        eval_loss: the mean loss on the held-out set after the epoch, NaN where the
            epoch was not evaluated.
        eval_accuracy: the held-out accuracy after the epoch, NaN where not
            evaluated.
        step_loss: the loss each step minimised, shape ``(epochs * batches,)``. A
            padded last batch divides by the nominal batch size, so its value is
            lower in proportion to its missing examples.

    After a divergence every entry from the first non-finite step on is NaN, except
    the step loss of that step itself, which keeps its non-finite value.
    """

    epoch: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    eval_loss: np.ndarray
    eval_accuracy: np.ndarray
    step_loss: np.ndarray

    @classmethod
    def empty(cls) -> History:
        """Return a history with no epochs, to concatenate onto."""
        return cls(np.zeros((0,), np.int32), *(np.zeros((0,)) for _ in cls._fields[1:]))

    def concatenate(self, later: History) -> History:
        """Append ``later`` (for example, the history of a resumed run)."""
        if self.epoch.size == 0:
            return later
        return History(
            *(
                np.concatenate([np.asarray(a), np.asarray(b)])
                for a, b in zip(self, later, strict=True)
            )
        )

    def evaluated(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the evaluated epochs with their held-out loss and accuracy."""
        keep = ~np.isnan(self.eval_loss)
        return self.epoch[keep], self.eval_loss[keep], self.eval_accuracy[keep]


class FitResult(NamedTuple):
    """The result of :func:`fit`: the state to continue from and the history."""

    state: TrainState
    history: History

    @property
    def params(self) -> Params:
        """The trained parameters (the last finite ones after a divergence)."""
        return self.state.params

    @property
    def diverged(self) -> bool:
        """Whether a step's loss or parameters stopped being finite."""
        return not bool(self.state.finite)

    @property
    def nonfinite_step(self) -> int | None:
        """The index of the first non-finite step, or None if training is finite."""
        return int(self.state.nonfinite_step) if self.diverged else None


def _key_data(key: Any) -> Array:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key_data(jax.random.key(int(key)))
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    if key.dtype != jnp.uint32 or key.ndim != 1:
        raise ValidationError(
            f"key must be an int seed, a jax.random.key or uint32 key data, got "
            f"dtype {key.dtype} and shape {tuple(key.shape)}; for example key=0"
        )
    return key


def init_state(
    network: Network,
    optimizer: optax.GradientTransformation,
    params: Params,
    key: Any,
) -> TrainState:
    """Build the state that :func:`fit` starts from.

    Args:
        network: the network the parameters belong to.
        optimizer: the Optax optimiser that :func:`fit` will be given; frozen
            parameters are routed around it by :func:`~jbp.training.with_frozen`.
        params: the starting parameters.
        key: the data key that orders every epoch: an int seed, a
            ``jax.random.key`` or raw ``uint32`` key data.

    Returns:
        A state at epoch 0 and step 0, with the finite flag set.
    """
    check_params(network, params)
    params = jax.tree.map(jnp.asarray, params)
    return TrainState(
        params=params,
        opt_state=with_frozen(network, optimizer).init(params),
        key=_key_data(key),
        epoch=jnp.zeros((), jnp.int32),
        step=jnp.zeros((), jnp.int32),
        finite=jnp.ones((), jnp.bool_),
        nonfinite_step=jnp.full((), -1, jnp.int32),
    )


def set_hyperparameter(state: TrainState, name: str, value: float) -> TrainState:
    """Set an ``optax.inject_hyperparams`` hyperparameter, such as the learning rate.

    The value keeps the dtype of the one it replaces, so the next :func:`fit` call
    reuses its compiled program. A hyperparameter given as a schedule is overwritten
    by the schedule at every step, so setting it has no lasting effect.

    Raises:
        ValidationError: if the optimiser state has no hyperparameter ``name``, or
            a learning rate is not a finite number greater than 0.
    """
    if name == "learning_rate":
        value = check_learning_rate(value)
    old = optax.tree_utils.tree_get(state.opt_state, name, default=None)
    if old is None:
        raise ValidationError(
            f"the optimiser state has no hyperparameter {name!r}; wrap the optimiser "
            f"as optax.inject_hyperparams(optax.sgd)({name}=...) to change it between "
            "calls"
        )
    new = jnp.asarray(value, dtype=jnp.asarray(old).dtype)
    opt_state = optax.tree_utils.tree_set(state.opt_state, **{name: new})
    return state._replace(opt_state=opt_state)


def correct(loss: Loss, net: Array, out: Array, t: Array) -> Array:
    """Score each example's prediction: 1 if correct, else 0.

    Integer labels are compared with the arg-max of the logits. A single output, or
    binary cross-entropy, is read as binary, with target ``t > 0.5``. The prediction
    is ``net > 0`` for binary cross-entropy, whose ``net`` are logits, and
    ``out > 0.5`` otherwise. Several binary outputs score the share that is right.
    Other targets with several outputs compare arg-maxes, as for one-hot targets.
    """
    if jnp.issubdtype(t.dtype, jnp.integer):
        return (jnp.argmax(net, axis=-1) == t).astype(net.dtype)
    if loss.name == "binary_cross_entropy" or out.shape[-1] == 1:
        predicted = net > 0 if loss.name == "binary_cross_entropy" else out > 0.5
        return jnp.mean((predicted == (t > 0.5)).astype(net.dtype), axis=-1)
    return (jnp.argmax(out, axis=-1) == jnp.argmax(t, axis=-1)).astype(net.dtype)


def _weighted_loss(
    network: Network,
    loss: Loss,
    params: Params,
    batch: Batch,
    divisor: int,
) -> tuple[Array, tuple[Array, Array]]:
    # The remainder rule of jbp.data: real examples' losses summed, divided by
    # the nominal batch size, so padding slots contribute nothing.
    x, t, mask = batch
    trace = forward_trace(network, params, x)
    net, out = trace.nets[-1], trace.outs[-1]
    per_example = loss.per_example(net, out, t)
    total = jnp.sum(jnp.where(mask, per_example, 0))
    hits = jnp.sum(jnp.where(mask, correct(loss, net, out, t), 0))
    return total / divisor, (total, hits)


def _all_finite(tree: Any) -> Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def _keep_if(ok: Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def identity(batch: Batch) -> Batch:
    """Return ``batch`` unchanged: the default ``constrain`` of :func:`fit`."""
    return batch


@functools.cache
def _mesh_constrain(
    mesh: Mesh, constrain: Callable[[Batch], Batch]
) -> Callable[[Batch], Batch]:
    # Cached so that every fit call on the same mesh passes the same function
    # object to the jitted chunk, which takes it as a static argument.
    def constrain_on_mesh(batch: Batch) -> Batch:
        return constrain_batch(mesh, constrain(batch))

    return constrain_on_mesh


def _pad_columns(array: Array, multiple: int, value: Any) -> Array:
    """Pad axis 1 of a ``(batches, batch_size)`` array to a multiple of ``multiple``."""
    padding = -array.shape[1] % multiple
    if padding == 0:
        return array
    return jnp.pad(array, ((0, 0), (0, padding)), constant_values=value)


@functools.partial(
    jax.jit,
    static_argnames=(
        "network",
        "optimizer",
        "loss",
        "batch_size",
        "epochs",
        "eval_every",
        "constrain",
        "pad_multiple",
        "guard",
    ),
)
def _run_chunk(
    network: Network,
    optimizer: optax.GradientTransformation,
    loss: str,
    batch_size: int,
    epochs: int,
    eval_every: int,
    constrain: Callable[[Batch], Batch],
    pad_multiple: int,
    guard: bool,
    state: TrainState,
    x: Array,
    t: Array,
    x_eval: Array | None,
    t_eval: Array | None,
):
    spec = get_loss(loss)
    optimizer = with_frozen(network, optimizer)
    examples = x.shape[0]
    nan = jnp.asarray(jnp.nan, x.dtype)
    value_and_grad = jax.value_and_grad(
        functools.partial(_weighted_loss, network, spec), has_aux=True
    )

    def train_step(state: TrainState, batch: tuple[Array, Array]):
        indices, mask = batch
        step_batch = constrain((x[indices], t[indices], mask))
        (value, (total, hits)), grads = value_and_grad(
            state.params, step_batch, batch_size
        )

        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        ok = state.finite & jnp.isfinite(value) & _all_finite(params)
        first_failure = state.finite & ~ok
        if not guard:
            # Selecting between old and new state at every step costs about a
            # fifth of a small network's step time, so the fast program only
            # records the flag, and fit() reruns a diverged chunk with the guard.
            state = TrainState(
                params=params,
                opt_state=opt_state,
                key=state.key,
                epoch=state.epoch,
                step=state.step + 1,
                finite=ok,
                nonfinite_step=jnp.where(
                    first_failure, state.step, state.nonfinite_step
                ),
            )
            return state, (value, total, hits)

        # A non-finite step is not applied, and every later one is skipped.
        state = TrainState(
            params=_keep_if(ok, params, state.params),
            opt_state=_keep_if(ok, opt_state, state.opt_state),
            key=state.key,
            epoch=state.epoch,
            step=state.step + ok.astype(jnp.int32),
            finite=ok,
            nonfinite_step=jnp.where(first_failure, state.step, state.nonfinite_step),
        )
        kept = ok | first_failure
        return state, (
            jnp.where(kept, value, nan),
            jnp.where(ok, total, nan),
            jnp.where(ok, hits, nan),
        )

    # NOTE: the held-out set goes through one forward pass, so it must fit in
    # memory at once beside the training step.
    def evaluate(params: Params) -> tuple[Array, Array]:
        mask = jnp.ones(x_eval.shape[:1], jnp.bool_)
        count = x_eval.shape[0]
        _, (total, hits) = _weighted_loss(
            network, spec, params, (x_eval, t_eval, mask), count
        )
        return total / count, hits / count

    def train_epoch(state: TrainState, _):
        key = jax.random.wrap_key_data(state.key)
        indices, mask = epoch_batches(key, state.epoch, examples, batch_size)
        # Slots that make a batch divide across the devices point at example 0
        # with mask False, so they count no more than the last batch's padding.
        indices = _pad_columns(indices, pad_multiple, 0)
        mask = _pad_columns(mask, pad_multiple, False)
        state, (step_loss, totals, hits) = jax.lax.scan(
            train_step, state, (indices, mask)
        )
        state = state._replace(epoch=state.epoch + state.finite.astype(jnp.int32))

        if x_eval is None:
            eval_loss, eval_accuracy = nan, nan
        else:
            due = state.finite & (state.epoch % eval_every == 0)
            eval_loss, eval_accuracy = jax.lax.cond(
                due, evaluate, lambda params: (nan, nan), state.params
            )
        metrics = (
            jnp.sum(totals) / examples,
            jnp.sum(hits) / examples,
            eval_loss,
            eval_accuracy,
            step_loss,
        )
        return state, metrics

    return jax.lax.scan(train_epoch, state, None, length=epochs)


def _identity_tree(tree: Any) -> Any:
    return tree


def _check_positive(value: Any, name: str, hint: str) -> int:
    value = check_steps(value, name)
    if value < 1:
        raise ValidationError(f"{name} must be at least 1, got {value}; {hint}")
    return value


def _check_state(
    network: Network, optimizer: optax.GradientTransformation, state: Any
) -> None:
    if not isinstance(state, TrainState):
        raise ValidationError(
            f"state must be a TrainState, got {type(state).__name__}; build one "
            "with jbp.init_state(network, optimizer, params, key)"
        )
    check_params(network, state.params)
    expected = jax.eval_shape(with_frozen(network, optimizer).init, state.params)
    if jax.tree.structure(expected) != jax.tree.structure(state.opt_state):
        raise ValidationError(
            "state.opt_state does not match the optimizer passed to fit; build the "
            "state with jbp.init_state(network, optimizer, params, key) using the "
            "same optimizer"
        )


def _check_data(
    network: Network, spec: Loss, x: Any, t: Any, dtype: Any, names: tuple[str, str]
) -> tuple[Array, Array]:
    x = check_inputs(network, x, name=names[0])
    if x.ndim != 2:
        raise ValidationError(
            f"{names[0]} has shape {tuple(x.shape)}; fit expects one example per row, "
            f"shape (examples, {network.in_size})"
        )
    t = check_targets(network, spec, t, (x.shape[0],), name=names[1])
    x = x.astype(dtype)
    if jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(dtype)
    else:
        t = t.astype(jnp.int32)
    return x, t


def fit(
    network: Network,
    state: TrainState,
    x: Any,
    t: Any,
    optimizer: optax.GradientTransformation,
    epochs: int,
    *,
    batch_size: int,
    loss: str = "half_sse",
    eval_data: tuple[Any, Any] | None = None,
    eval_every: int = 1,
    chunk_epochs: int | None = None,
    callback: Callable[[FitResult], None] | None = None,
    constrain: Callable[[Batch], Batch] = identity,
    mesh: Mesh | None = None,
    on_divergence: str = "raise",
) -> FitResult:
    """Train ``epochs`` more epochs of minibatch steps, in compiled chunks.

    Every epoch reshuffles the training set from ``fold_in(state.key, epoch)`` and
    visits each example exactly once. A last batch that ``batch_size`` does not fill
    is padded with masked slots, and every batch's loss is the sum of its real
    examples' losses divided by ``batch_size`` (see :mod:`jbp.data`).

    Args:
        network: the network description (static: a new one compiles anew).
        state: the state to start or resume from, from :func:`init_state` or an
            earlier :class:`FitResult`.
        x: training inputs of shape ``(examples, n_in)``.
        t: training targets of shape ``(examples, n_out)``, or integer class labels
            of shape ``(examples,)`` for cross-entropy.
        optimizer: any Optax optimiser, the same object ``state`` was built with.
            Reuse one object across calls, because a new object compiles anew. Use
            ``optax.inject_hyperparams`` and :func:`set_hyperparameter` to change the
            learning rate without recompiling.
        epochs: how many epochs to train in this call (0 or more).
        batch_size: the nominal number of examples per step, at most ``examples``.
        loss: the name of the loss (see :data:`jbp.LOSSES`).
        eval_data: an optional held-out ``(x, t)`` pair, evaluated in the same
            compiled program.
        eval_every: evaluate the held-out set after every epoch whose count (from 1,
            over the whole run) divides by this.
        chunk_epochs: epochs per compiled call; the callback runs between chunks.
            By default the whole call is one chunk.
        callback: called after each chunk with the :class:`FitResult` so far, for
            progress bars, log lines and checkpoints. jbp itself never prints.
        constrain: applied to every step's ``(x, t, mask)`` batch inside the
            compiled step, for example to add a sharding constraint. It must keep
            shapes, and it is a static argument, so pass the same function object
            on every call (a new lambda compiles anew). By default the identity.
        mesh: a one-axis mesh from :func:`jbp.data_mesh` to train data-parallel
            on. The data, the held-out set and the state are replicated on every
            device, and each step's batch is split along the ``data`` axis after
            ``constrain``. A ``batch_size`` that does not divide by ``mesh.size``
            gets masked slots up to the next multiple, which count in neither the
            loss nor the metrics. The returned state stays replicated on the mesh.
            By default (None) nothing is placed and JAX's default device is used.
        on_divergence: ``"raise"`` raises :class:`DivergenceError`; ``"return"``
            returns the result, with ``result.diverged`` set.

    Returns:
        The final state and the history of this call.

    Raises:
        ValidationError: if the data, targets, parameters, state or settings do not
            fit the network.
        DivergenceError: if a step's loss or parameters were not finite and
            ``on_divergence="raise"``; its ``result`` contains the last finite state.
        TrainingInterrupted: on Ctrl-C; its ``result`` contains the state at the last
            chunk boundary.

    Example:
        >>> import jax, optax
        >>> from jbp import Network, fit, init_params, init_state
        >>> net = Network(sizes=(2, 4, 1), activations=("tanh", "sigmoid"))
        >>> params = init_params(net, jax.random.key(0))
        >>> optimizer = optax.sgd(0.5)
        >>> state = init_state(net, optimizer, params, key=1)
        >>> x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
        >>> t = [[0.0], [1.0], [1.0], [0.0]]
        >>> result = fit(net, state, x, t, optimizer, 10, batch_size=3)
        >>> result.history.train_loss.shape, int(result.state.step)
        ((10,), 20)
    """
    spec = get_loss(loss)
    check_loss_fits(network, spec)
    _check_state(network, optimizer, state)
    epochs = check_steps(epochs, "epochs")
    eval_every = _check_positive(eval_every, "eval_every", "for example eval_every=1")
    if chunk_epochs is None:
        chunk_epochs = max(epochs, 1)
    chunk_epochs = _check_positive(
        chunk_epochs, "chunk_epochs", "for example chunk_epochs=10"
    )
    if on_divergence not in ("raise", "return"):
        raise ValidationError(
            f"on_divergence must be 'raise' or 'return', got {on_divergence!r}"
        )

    dtype = jnp.result_type(*jax.tree.leaves(state.params))
    x, t = _check_data(network, spec, x, t, dtype, ("x", "t"))
    batch_size = check_batch_size(batch_size, x.shape[0])
    x_eval = t_eval = None
    if eval_data is not None:
        if not (isinstance(eval_data, (tuple, list)) and len(eval_data) == 2):
            raise ValidationError(
                "eval_data must be a pair (x, t) of held-out inputs and targets, got "
                f"{type(eval_data).__name__}"
            )
        x_eval, t_eval = _check_data(
            network, spec, *eval_data, dtype, ("eval_data x", "eval_data t")
        )

    pad_multiple = 1
    place = _identity_tree
    if mesh is not None:
        if not isinstance(mesh, Mesh) or mesh.axis_names != (DATA_AXIS,):
            raise ValidationError(
                f"mesh must be a one-axis jax.sharding.Mesh named {DATA_AXIS!r}, got "
                f"{mesh!r}; build it with jbp.data_mesh(num_devices)"
            )
        pad_multiple = mesh.size
        constrain = _mesh_constrain(mesh, constrain)
        place = functools.partial(replicate, mesh)
        x, t, state = place((x, t, state))
        if x_eval is not None:
            x_eval, t_eval = place((x_eval, t_eval))

    run = functools.partial(
        _run_chunk,
        network,
        optimizer,
        loss,
        batch_size,
        eval_every=eval_every,
        constrain=constrain,
        pad_multiple=pad_multiple,
        x=x,
        t=t,
        x_eval=x_eval,
        t_eval=t_eval,
    )
    steps_per_epoch = num_batches(x.shape[0], batch_size)
    history = History.empty()
    result = FitResult(state, history)
    first_epoch = int(state.epoch)
    done = 0
    try:
        while done < epochs and not result.diverged:
            length = min(chunk_epochs, epochs - done)
            new_state, metrics = run(epochs=length, state=result.state, guard=False)
            if not bool(new_state.finite):
                # Rerun the chunk, keeping the last finite state and skipping
                # every step after the first non-finite one.
                new_state, metrics = run(epochs=length, state=result.state, guard=True)
            metrics = jax.device_get(metrics)
            new_state = jax.block_until_ready(place(new_state))

            epoch_numbers = np.arange(length, dtype=np.int32) + first_epoch + done + 1
            step_loss = np.asarray(metrics[4]).reshape(length * steps_per_epoch)
            chunk = History(epoch_numbers, *map(np.asarray, metrics[:4]), step_loss)
            history = history.concatenate(chunk)
            done += length
            result = FitResult(new_state, history)
            if callback is not None:
                callback(result)
    except KeyboardInterrupt as interrupt:
        raise TrainingInterrupted(result) from interrupt

    if result.diverged and on_divergence == "raise":
        raise DivergenceError(result)
    return result
