"""Samples per second against device count, one subprocess per count.

On a CPU the count is forced with ``XLA_FLAGS=--xla_force_host_platform_device_count``,
which must be set before JAX starts, hence a subprocess each. On a GPU machine the
subprocess uses the first N real devices. The global batch is fixed, so this is
strong scaling: the batch is split over a 1-D mesh with
``jax.sharding.NamedSharding``, the parameters are replicated, and XLA inserts the
all-reduce of the gradients.

Run as ``python -m bench.devices --devices N ...`` with ``experiments/`` on the path;
it prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXPERIMENTS = Path(__file__).resolve().parents[1]


def worker(devices: int, sizes: tuple[int, ...], batch: int, steps: int, repeats: int):
    """Train the MLP with the batch sharded over ``devices`` devices; return a row."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    from bench import mlp
    from bench.hlo import inspect_while_loop
    from bench.loops import scan_over_batches, sgd
    from bench.timing import measure

    available = jax.devices()
    if len(available) < devices:
        raise SystemExit(
            f"asked for {devices} devices but JAX sees {len(available)}: {available}"
        )
    if batch % devices:
        raise SystemExit(f"batch {batch} does not split evenly over {devices} devices")
    mesh = jax.sharding.Mesh(available[:devices], ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    # xs is (steps, batch, features) and ts is (steps, batch): split the batch axis.
    split = NamedSharding(mesh, PartitionSpec(None, "data"))

    spec = mlp.MlpSpec(f"{'-'.join(map(str, sizes))}", sizes, batch, steps)
    data = mlp.make_data(spec)
    optimizer = sgd(spec.rate)
    loop = scan_over_batches(data.network, optimizer, mlp.LOSS)
    params = jax.device_put(data.params, replicated)
    opt_state = jax.device_put(optimizer.init(data.params), replicated)
    xs = jax.device_put(jnp.asarray(data.xs), split)
    ts = jax.device_put(jnp.asarray(data.ts), split)

    compiled = loop.lower(params, opt_state, xs, ts).compile().as_text()
    timing, _ = measure(lambda: loop(params, opt_state, xs, ts), repeats)
    loop_summary = inspect_while_loop(compiled) or {}
    return {
        "devices": devices,
        "backend": jax.default_backend(),
        "device_kind": available[0].device_kind,
        "batch": batch,
        "steps": steps,
        "timing": timing.to_json(),
        "samples_per_s": steps * batch / timing.best_s,
        "all_reduce_in_program": "all-reduce" in compiled,
        "loop_operations": loop_summary.get("operation_count"),
    }


def run(
    counts: tuple[int, ...],
    sizes: tuple[int, ...],
    batch: int,
    steps: int,
    repeats: int,
    backend: str,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run :func:`worker` in a fresh process for each device count in ``counts``.

    Args:
        counts: device counts to try.
        sizes, batch, steps: the MLP, global batch and steps per timed run.
        repeats: timed runs after the first.
        backend: the parent's JAX backend; on ``cpu`` the devices are forced host
            devices, elsewhere the real ones.
        log: where progress lines go.

    Returns:
        One row per count, with ``error`` set when the subprocess failed.
    """
    rows = []
    for count in counts:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(EXPERIMENTS), env.get("PYTHONPATH")])
        )
        if backend == "cpu":
            flags = env.get("XLA_FLAGS", "")
            env["XLA_FLAGS"] = (
                f"{flags} --xla_force_host_platform_device_count={count}".strip()
            )
            env["JAX_PLATFORMS"] = "cpu"
        command = [
            sys.executable,
            "-m",
            "bench.devices",
            "--devices",
            str(count),
            "--sizes",
            ",".join(map(str, sizes)),
            "--batch",
            str(batch),
            "--steps",
            str(steps),
            "--repeats",
            str(repeats),
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or ["no output"])[-1]
            log(f"  {count} devices: failed ({message})")
            rows.append({"devices": count, "error": message})
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        log(f"  {count} devices: {row['samples_per_s']:,.0f} samples/s")
        rows.append(row)
    return rows


def main() -> None:
    """Parse the worker's options, run it and print its row as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--sizes", required=True, help="layer widths, e.g. 784,1024,10")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    args = parser.parse_args()
    sizes = tuple(int(size) for size in args.sizes.split(","))
    row = worker(args.devices, sizes, args.batch, args.steps, args.repeats)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
