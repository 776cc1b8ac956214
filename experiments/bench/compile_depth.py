"""Compile time against depth, and scanning over identical layers as the fix.

jbp's forward pass is a Python loop over layers, so the traced program, and with it
XLA's compile time, grows with depth. A network whose hidden layers all have the
same shape can instead stack their parameters and run one ``lax.scan`` over them:
the program then contains one layer, whatever the depth. The scanned version here is
the benchmark's own, built from the same parameters, and :func:`run` checks that
it computes the same loss history as ``jbp.train``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jbp
from bench import mlp
from bench.loops import fixed_batch_loop, sgd
from bench.timing import measure_interleaved

AGREEMENT_RTOL = mlp.AGREEMENT_RTOL


def stack_hidden(params: jbp.Params) -> tuple[jbp.Dense, jbp.Dense]:
    """Stack every layer but the last into one ``Dense`` with a leading layer axis."""
    hidden = params[:-1]
    stacked = jbp.Dense(
        w=jnp.stack([p.w for p in hidden]), b=jnp.stack([p.b for p in hidden])
    )
    return stacked, params[-1]


def scanned_loss(params, x, t):
    """Mean cross-entropy of a ReLU net whose hidden layers run in one scan."""
    stacked, last = params

    def layer(h, p):
        return jax.nn.relu(h @ p.w.T + p.b), None

    h, _ = jax.lax.scan(layer, x, stacked)
    logits = h @ last.w.T + last.b
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, t))


@functools.partial(jax.jit, static_argnames=("optimizer", "steps"))
def train_scanned(params, opt_state, x, t, optimizer, steps):
    """Train the scanned-layers net ``steps`` SGD steps on one batch, in one scan."""

    def body(carry, _):
        params, opt_state = carry
        value, grads = jax.value_and_grad(scanned_loss)(params, x, t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    (params, opt_state), losses = jax.lax.scan(
        body, (params, opt_state), None, length=steps
    )
    return params, losses


def _lower_and_compile(function, *args) -> dict[str, float]:
    start = time.perf_counter()
    lowered = function.lower(*args)
    traced = time.perf_counter()
    lowered.compile()
    done = time.perf_counter()
    return {"trace_and_lower_s": traced - start, "xla_compile_s": done - traced}


def measure_depth(
    depth: int, width: int, batch: int, steps: int, repeats: int
) -> dict[str, Any]:
    """Time compilation and steady-state training at one depth, both ways."""
    spec = mlp.MlpSpec(f"{depth} x {width}", (width,) * (depth + 1), batch, steps)
    data = mlp.make_data(spec, steps=1)
    x, t = data.xs[0], data.ts[0]
    optimizer = sgd(spec.rate)

    # The program jbp.train runs, built from the public step, compiled ahead of
    # time so that tracing and XLA's compilation are timed apart.
    loop, wrapped = fixed_batch_loop(data.network, optimizer, mlp.LOSS)
    unrolled_split = _lower_and_compile(
        loop, data.params, wrapped.init(data.params), x, t, steps
    )

    def run_jbp():
        result = jbp.train(
            data.network, data.params, x, t, optimizer, steps, loss=mlp.LOSS
        )
        return result.losses

    scanned = stack_hidden(data.params)
    scanned_state = optimizer.init(scanned)
    scanned_split = _lower_and_compile(
        train_scanned, scanned, scanned_state, x, t, optimizer, steps
    )

    def run_scanned():
        return train_scanned(scanned, scanned_state, x, t, optimizer, steps)[1]

    timings = measure_interleaved({"jbp": run_jbp, "scanned": run_scanned}, repeats)
    (jbp_timing, jbp_losses), (scanned_timing, scanned_losses) = timings.values()

    jbp_losses, scanned_losses = np.asarray(jbp_losses), np.asarray(scanned_losses)
    deviation = float(np.max(np.abs(scanned_losses - jbp_losses) / np.abs(jbp_losses)))
    assert deviation <= AGREEMENT_RTOL, (
        f"at depth {depth} the scanned-layers net's losses {scanned_losses} differ "
        f"from jbp.train's {jbp_losses} (relative deviation {deviation:.3g})"
    )
    return {
        "depth": depth,
        "width": width,
        "batch": batch,
        "steps": steps,
        "jbp_train": {"timing": jbp_timing.to_json(), **unrolled_split},
        "scanned_layers": {"timing": scanned_timing.to_json(), **scanned_split},
        "max_relative_deviation": deviation,
    }


def growth_exponent(depths: list[int], seconds: list[float]) -> float | None:
    """Fit ``seconds ~ depth**k`` over the deeper half of the points; return ``k``."""
    if len(depths) < 2:
        return None
    half = max(2, len(depths) // 2)
    log_depth = np.log(np.asarray(depths[-half:], dtype=float))
    log_seconds = np.log(np.maximum(np.asarray(seconds[-half:]), 1e-9))
    return float(np.polyfit(log_depth, log_seconds, 1)[0])


def compile_seconds(entry: dict[str, Any]) -> float:
    """Tracing, lowering and XLA compilation of one form, ahead of time."""
    return entry["trace_and_lower_s"] + entry["xla_compile_s"]


def run(
    depths: tuple[int, ...],
    width: int,
    batch: int,
    steps: int,
    repeats: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every depth; fit how compile time grows for both forms."""
    rows = []
    for depth in depths:
        row = measure_depth(depth, width, batch, steps, repeats)
        log(
            f"  depth {depth}: jbp's program compiles in "
            f"{compile_seconds(row['jbp_train']):.2f} s, scanned layers in "
            f"{compile_seconds(row['scanned_layers']):.2f} s"
        )
        rows.append(row)
    listed = [row["depth"] for row in rows]
    return {
        "rows": rows,
        "growth_exponent": {
            form: growth_exponent(listed, [compile_seconds(row[form]) for row in rows])
            for form in ("jbp_train", "scanned_layers")
        },
    }
