"""The worked example trained for many SGD steps by jbp and by the usual alternatives.

Every contender starts from the example's weights and applies the same SGD updates
in float64, so each must end at the same weights. :func:`run` checks that before it
reports any time, so a contender cannot look fast by doing less work.

A contender is a name and a builder. The builder takes the :class:`WorkedExample`
and returns a :class:`Prepared` run, or raises :class:`Skipped` with the reason.
Adding a contender is one builder and one line in :data:`CONTENDERS`.
"""

from __future__ import annotations

import ctypes
import functools
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

import jbp
from bench.hlo import inspect_while_loop
from bench.loops import fixed_batch_loop, sgd
from bench.machine import find_c_compiler
from bench.timing import Timing, measure_interleaved

C_SOURCE = Path(__file__).with_name("worked_example.c")
C_FLAGS = ("-O2", "-shared", "-fPIC")

AGREEMENT_RTOL = 1e-9
"""How far a contender's final weights and loss may stray from jbp's, relatively.

Every contender runs in float64, where 10,000 steps of this example drift by about
1e-14 between orders of summation, so 1e-9 is loose for honest arithmetic and far
too tight for a loop that skips or changes work.
"""


class Skipped(Exception):
    """Raised by a builder whose contender cannot run here, with the reason."""


class WorkedExample(NamedTuple):
    """The example as plain float64 NumPy data, shared by every contender.

    Attributes:
        file: the parsed built-in network file.
        w1: hidden-layer weights, shape ``(n_hidden, n_in)``.
        w2: output-layer weights, shape ``(n_out, n_hidden)``.
        b1: the hidden layer's shared bias.
        b2: the output layer's shared bias.
        x: the input, shape ``(n_in,)``.
        t: the target, shape ``(n_out,)``.
        rate: the SGD learning rate.
        steps: how many SGD steps every contender runs.
    """

    file: jbp.NetworkFile
    w1: np.ndarray
    w2: np.ndarray
    b1: float
    b2: float
    x: np.ndarray
    t: np.ndarray
    rate: float
    steps: int


class FinalState(NamedTuple):
    """A contender's final weights and the loss of its last step."""

    w1: np.ndarray
    w2: np.ndarray
    last_step_loss: float


class Prepared(NamedTuple):
    """A contender ready to time.

    Attributes:
        run: trains ``steps`` steps from the example's weights; what it returns is
            waited for with ``jax.block_until_ready`` inside the timed region.
        final: reads the weights and last loss out of ``run``'s result, outside
            the timed region.
        build_s: seconds spent building the contender before the first run (the
            C compiler's time), or 0.
        note: what the contender is, for the report.
    """

    run: Callable[[], Any]
    final: Callable[[Any], FinalState]
    build_s: float = 0.0
    note: str = ""


class Contender(NamedTuple):
    """A name in the report and the builder of its run."""

    name: str
    build: Callable[[WorkedExample], Prepared]


def load_worked_example(steps: int) -> WorkedExample:
    """Read the built-in worked example and check it has the layout the C loop uses.

    Raises:
        ValueError: if the example is not two sigmoid layers with shared,
            untrained biases and the half squared error.
    """
    file = jbp.read_network_file()
    network = file.network
    layout = (
        network.num_layers == 2
        and network.activations == ("sigmoid", "sigmoid")
        and all(network.shared_bias)
        and not any(network.train_biases)
        and all(network.train_weights)
        and file.loss == "half_sse"
        and np.ndim(file.x) == 1
    )
    if not layout:
        raise ValueError(
            f"the worked example in {file.source} changed layout; the benchmark's "
            "NumPy, PyTorch and C loops expect two sigmoid layers with shared, "
            "untrained biases, the half_sse loss and one example"
        )
    return WorkedExample(
        file=file,
        w1=np.array(file.weights[0], dtype=np.float64),
        w2=np.array(file.weights[1], dtype=np.float64),
        b1=float(file.biases[0]),
        b2=float(file.biases[1]),
        x=np.array(file.x, dtype=np.float64),
        t=np.array(file.t, dtype=np.float64),
        rate=float(file.learning_rate),
        steps=steps,
    )


def loss_at(example: WorkedExample, w1: np.ndarray, w2: np.ndarray) -> float:
    """Compute the example's loss at weights ``w1``, ``w2`` in float64 NumPy."""
    h = 1.0 / (1.0 + np.exp(-(w1 @ example.x + example.b1)))
    out = 1.0 / (1.0 + np.exp(-(w2 @ h + example.b2)))
    return float(0.5 * np.sum((out - example.t) ** 2))


def _jbp_final(result: tuple) -> FinalState:
    params, losses = result
    return FinalState(
        np.asarray(params[0].w), np.asarray(params[1].w), float(losses[-1])
    )


def build_jbp_train(example: WorkedExample, watch_finite: bool = True) -> Prepared:
    """``jbp.train``: the public call, with its input checks, one compiled scan.

    ``watch_finite=False`` drops the divergence flag, to measure what it costs.
    """
    file = example.file
    optimizer = sgd(example.rate)
    with jax.enable_x64(True):
        params = file.params(np.float64)

    def run():
        with jax.enable_x64(True):
            result = jbp.train(
                file.network,
                params,
                example.x,
                example.t,
                optimizer,
                example.steps,
                loss=file.loss,
                watch_finite=watch_finite,
            )
        return result.params, result.losses

    note = "the public call, input checks included"
    if not watch_finite:
        note = "as jbp.train, without the divergence flag"
    return Prepared(run, _jbp_final, note=note)


def build_compiled_loop(example: WorkedExample, unroll: int = 1) -> Prepared:
    """Call the compiled scan of ``jbp.train`` directly, without its input checks.

    With ``unroll`` above 1 the scan runs that many steps per loop iteration,
    which shows what unrolling does to XLA's loop on this backend.
    """
    file = example.file
    loop, optimizer = fixed_batch_loop(
        file.network, sgd(example.rate), file.loss, unroll
    )
    with jax.enable_x64(True):
        params = file.params(np.float64)
        opt_state = optimizer.init(params)
        x = jax.numpy.asarray(example.x)
        t = jax.numpy.asarray(example.t)

    def run():
        with jax.enable_x64(True):
            return loop(params, opt_state, x, t, steps=example.steps)

    if unroll > 1:
        note = f"the row above with lax.scan(unroll={unroll})"
    else:
        note = (
            "jit(lax.scan(jbp.make_step)) called directly: the gap to jbp.train "
            "is jbp.train's fixed cost per call"
        )
    return Prepared(run, _jbp_final, note=note)


def compiled_loop_hlo(example: WorkedExample, unroll: int = 1) -> str:
    """Return the optimised HLO text of the compiled loop, for inspection."""
    file = example.file
    loop, optimizer = fixed_batch_loop(
        file.network, sgd(example.rate), file.loss, unroll
    )
    with jax.enable_x64(True):
        params = file.params(np.float64)
        opt_state = optimizer.init(params)
        lowered = loop.lower(params, opt_state, example.x, example.t, example.steps)
        return lowered.compile().as_text()


def build_python_loop(example: WorkedExample) -> Prepared:
    """Call one jitted ``jbp.make_step`` from a Python ``for`` loop."""
    network = example.file.network
    optimizer = jbp.with_frozen(network, sgd(example.rate))
    step = jax.jit(jbp.make_step(network, optimizer, example.file.loss))
    with jax.enable_x64(True):
        params = example.file.params(np.float64)
        opt_state = optimizer.init(params)
        x = jax.numpy.asarray(example.x)
        t = jax.numpy.asarray(example.t)

    def run():
        with jax.enable_x64(True):
            current, state, value = params, opt_state, None
            for _ in range(example.steps):
                current, state, value = step(current, state, x, t)
        return current, value

    def final(result):
        current, value = result
        return FinalState(
            np.asarray(current[0].w), np.asarray(current[1].w), float(value)
        )

    return Prepared(run, final, note="how most JAX examples train")


def build_numpy_loop(example: WorkedExample) -> Prepared:
    """Run the delta rule on NumPy arrays, one Python iteration per step."""

    def run():
        w1, w2 = example.w1.copy(), example.w2.copy()
        x, t, rate = example.x, example.t, example.rate
        loss = 0.0
        for _ in range(example.steps):
            h = 1.0 / (1.0 + np.exp(-(w1 @ x + example.b1)))
            out = 1.0 / (1.0 + np.exp(-(w2 @ h + example.b2)))
            error = out - t
            loss = 0.5 * np.sum(error**2)

            delta_out = error * out * (1.0 - out)
            delta_hidden = (w2.T @ delta_out) * h * (1.0 - h)

            w2 = w2 - rate * np.outer(delta_out, h)
            w1 = w1 - rate * np.outer(delta_hidden, x)
        return w1, w2, loss

    def final(result):
        w1, w2, loss = result
        return FinalState(w1, w2, float(loss))

    return Prepared(run, final, note="float64 arrays, hand-written delta rule")


def build_torch_eager(example: WorkedExample) -> Prepared:
    """PyTorch autograd and ``torch.optim.SGD`` in eager mode, float64."""
    try:
        import torch
    except ImportError:
        raise Skipped(
            "PyTorch is not installed; install the bench extra to add it"
        ) from None

    x = torch.tensor(example.x, dtype=torch.float64)
    t = torch.tensor(example.t, dtype=torch.float64)

    def run():
        w1 = torch.tensor(example.w1, dtype=torch.float64, requires_grad=True)
        w2 = torch.tensor(example.w2, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.SGD([w1, w2], lr=example.rate)
        loss = None
        for _ in range(example.steps):
            optimizer.zero_grad()
            h = torch.sigmoid(w1 @ x + example.b1)
            out = torch.sigmoid(w2 @ h + example.b2)
            loss = 0.5 * torch.sum((out - t) ** 2)
            loss.backward()
            optimizer.step()
        return w1, w2, loss

    def final(result):
        w1, w2, loss = result
        return FinalState(
            w1.detach().numpy(), w2.detach().numpy(), float(loss.detach())
        )

    note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    return Prepared(run, final, note=note)


@functools.cache
def compile_c_library(n_in: int, n_hidden: int, n_out: int):
    """Compile :data:`C_SOURCE` for these sizes into a shared library and load it.

    Cached, so the contender and the sigmoid measurement share one build.

    Returns:
        The loaded library, the compiler's wall time and the command line shown in
        the report.

    Raises:
        Skipped: when no C compiler is found or the compilation fails.
    """
    compiler = find_c_compiler()
    if compiler is None:
        raise Skipped("no C compiler found ($CC, cc, gcc or clang)")
    directory = Path(tempfile.mkdtemp(prefix="jbp-bench-c-"))
    library_path = directory / "worked_example.so"
    sizes = (f"-DN_IN={n_in}", f"-DN_HIDDEN={n_hidden}", f"-DN_OUT={n_out}")
    command = [compiler, *C_FLAGS, *sizes, str(C_SOURCE), "-o", str(library_path)]
    start = time.perf_counter()
    done = subprocess.run([*command, "-lm"], capture_output=True, text=True)
    build_s = time.perf_counter() - start
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise Skipped(f"the C compiler failed ({first})")

    library = ctypes.CDLL(str(library_path))
    pointer = ctypes.POINTER(ctypes.c_double)
    library.train_worked_example.argtypes = (
        [pointer] * 4 + [ctypes.c_double] * 3 + [ctypes.c_long, pointer]
    )
    library.train_worked_example.restype = None
    library.sigmoid_loop.argtypes = [pointer, ctypes.c_long, ctypes.c_long]
    library.sigmoid_loop.restype = None
    shown = " ".join([Path(compiler).name, *C_FLAGS, *sizes])
    return library, build_s, shown


def _c_library(example: WorkedExample):
    n_hidden, n_in = example.w1.shape
    return compile_c_library(n_in, n_hidden, len(example.t))


def _pointer(array: np.ndarray):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def build_c_loop(example: WorkedExample) -> Prepared:
    """Run the same arithmetic as a plain C loop, called once through ctypes."""
    library, build_s, command = _c_library(example)
    x = np.ascontiguousarray(example.x)
    t = np.ascontiguousarray(example.t)

    def run():
        w1 = np.ascontiguousarray(example.w1.copy())
        w2 = np.ascontiguousarray(example.w2.copy())
        losses = np.empty(example.steps)
        library.train_worked_example(
            _pointer(w1),
            _pointer(w2),
            _pointer(x),
            _pointer(t),
            example.b1,
            example.b2,
            example.rate,
            example.steps,
            _pointer(losses),
        )
        return w1, w2, losses

    def final(result):
        w1, w2, losses = result
        return FinalState(w1, w2, float(losses[-1]))

    return Prepared(run, final, build_s=build_s, note=command)


def measure_sigmoid(
    example: WorkedExample, repeats: int, min_total_s: float
) -> dict[str, float] | None:
    """Time ``steps`` sigmoids of a hidden-layer-sized vector, in XLA and in C.

    Each step of the example applies two such sigmoids, so this shows how much of
    the gap between jbp's loop and the C loop the exponential alone explains.
    Returns None when the C loop is skipped.
    """
    try:
        library, _, _ = _c_library(example)
    except Skipped:
        return None
    size, steps = example.w1.shape[0], example.steps
    start_values = np.linspace(-1.0, 1.0, size)

    @jax.jit
    def xla_loop(values):
        return jax.lax.fori_loop(0, steps, lambda _, v: jax.nn.sigmoid(v), values)

    def run_c():
        values = start_values.copy()
        library.sigmoid_loop(_pointer(values), size, steps)
        return values

    with jax.enable_x64(True):
        values = jax.numpy.asarray(start_values)

    def run_xla():
        with jax.enable_x64(True):
            return xla_loop(values)

    timings = measure_interleaved({"xla": run_xla, "c": run_c}, repeats, min_total_s)
    (xla, xla_result), (c, c_result) = timings["xla"], timings["c"]
    np.testing.assert_allclose(np.asarray(xla_result), c_result, rtol=1e-12)
    return {
        "size": size,
        "xla_ns_per_step": xla.best_s / steps * 1e9,
        "c_ns_per_step": c.best_s / steps * 1e9,
    }


JBP = "jbp.train (jit + scan)"
UNWATCHED = "jbp.train, divergence flag off"
LOOP_ALONE = "jbp compiled loop alone"
UNROLLED = "jbp compiled loop, unroll=8"
PYTHON_LOOP = "Python loop of jitted steps"
NUMPY_LOOP = "NumPy loop"
TORCH = "PyTorch eager"
C_LOOP = "C loop"

CONTENDERS: tuple[Contender, ...] = (
    Contender(JBP, build_jbp_train),
    Contender(UNWATCHED, functools.partial(build_jbp_train, watch_finite=False)),
    Contender(LOOP_ALONE, build_compiled_loop),
    Contender(UNROLLED, functools.partial(build_compiled_loop, unroll=8)),
    Contender(PYTHON_LOOP, build_python_loop),
    Contender(NUMPY_LOOP, build_numpy_loop),
    Contender(TORCH, build_torch_eager),
    Contender(C_LOOP, build_c_loop),
)
"""Every contender, the reference (``jbp.train``) first."""


def _row(
    name: str, prepared: Prepared, timing: Timing, state: FinalState, example
) -> dict[str, Any]:
    return {
        "name": name,
        "note": prepared.note,
        "timing": timing.to_json(),
        "build_s": prepared.build_s,
        "per_step_ns": timing.best_s / example.steps * 1e9,
        "final_loss": loss_at(example, state.w1, state.w2),
        "last_step_loss": state.last_step_loss,
        "weights": np.concatenate([state.w1.ravel(), state.w2.ravel()]).tolist(),
    }


def check_agreement(rows: list[dict[str, Any]]) -> float:
    """Raise AssertionError unless every row ends where the first one does.

    Returns:
        The largest relative deviation from the first row, over the final weights,
        the final loss and the last step's loss.
    """
    reference = rows[0]
    worst = 0.0
    for row in rows[1:]:
        for key in ("weights", "final_loss", "last_step_loss"):
            expected = np.asarray(reference[key])
            actual = np.asarray(row[key])
            deviation = float(np.max(np.abs(actual - expected) / np.abs(expected)))
            assert deviation <= AGREEMENT_RTOL, (
                f"{row['name']} ends at {key}={actual} but {reference['name']} at "
                f"{expected} (relative deviation {deviation:.3g} > "
                f"{AGREEMENT_RTOL:g}); the contenders do not compute the same thing"
            )
            worst = max(worst, deviation)
    return worst


def run(
    steps: int,
    repeats: int,
    min_total_s: float,
    contenders: tuple[Contender, ...] = CONTENDERS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time every contender on ``steps`` SGD steps and check they agree.

    Args:
        steps: SGD steps per run.
        repeats: rounds of steady-state runs, every contender once or more a
            round (see :func:`~bench.timing.measure_interleaved`).
        min_total_s: fast contenders repeat until their runs add up to this.
        contenders: what to time; the first is the reference for the ratios.
        log: where progress lines go.

    Returns:
        The rows (one per contender that ran, with ``ratio_to_reference``), the
        skipped contenders with their reasons, the largest relative deviation,
        and what XLA emitted for jbp's loop.
    """
    example = load_worked_example(steps)
    prepared, skipped = {}, []
    for contender in contenders:
        try:
            prepared[contender.name] = contender.build(example)
        except Skipped as reason:
            log(f"  {contender.name}: skipped ({reason})")
            skipped.append({"name": contender.name, "reason": str(reason)})

    runs = {name: entry.run for name, entry in prepared.items()}
    rows = []
    for name, (timing, result) in measure_interleaved(
        runs, repeats, min_total_s
    ).items():
        entry = prepared[name]
        rows.append(_row(name, entry, timing, entry.final(result), example))
        log(
            f"  {name}: {timing.best_s * 1e3:.3f} ms per {steps:,} steps "
            f"(first call {timing.first_s * 1e3:.1f} ms)"
        )

    deviation = check_agreement(rows)
    reference = rows[0]["timing"]["best_s"]
    for row in rows:
        row["ratio_to_reference"] = row["timing"]["best_s"] / reference
    return {
        "steps": steps,
        "reference": rows[0]["name"],
        "rows": rows,
        "skipped": skipped,
        "max_relative_deviation": deviation,
        "loop": inspect_while_loop(compiled_loop_hlo(example)),
        "loop_unrolled": inspect_while_loop(compiled_loop_hlo(example, unroll=8)),
        "sigmoid": measure_sigmoid(example, repeats, min_total_s),
    }
