"""Benchmark jbp beside the alternatives and the machine's limits, in one run.

Measures, on whatever machine runs it:

1. the worked example's 10,000 SGD steps: jbp.train against its own compiled loop,
   a Python loop of jitted steps, a NumPy loop, PyTorch eager and a plain C loop;
2. MLP training throughput in float32 against PyTorch eager and ``jnp.dot``'s peak;
3. ``jbp reproduce`` as a whole process, beside JAX's own start-up;
4. samples per second against batch size and against device count;
5. compile time against depth, with scanning over identical layers beside it.

Writes ``benchmarks.json``, ``benchmarks.md`` and ``benchmarks.png`` into ``--out``.
``--smoke`` runs every part once at tiny sizes, to check that the script works.

Usage::

    python experiments/benchmark.py --out docs
    python experiments/benchmark.py --smoke --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax

from bench import compile_depth, devices, mlp, process, report, worked_example
from bench.machine import describe_machine
from bench.settings import FULL, SMOKE, Settings

LOG = logging.getLogger("benchmark")
STEM = "benchmarks"


def _device_counts(settings: Settings) -> tuple[tuple[int, ...], str]:
    backend = jax.default_backend()
    if backend == "cpu":
        note = "forced host devices via XLA_FLAGS, all sharing the same cores"
        return settings.device_counts, note
    available = len(jax.devices())
    counts = tuple(count for count in settings.device_counts if count <= available)
    return counts or (1,), f"the first N of {available} {backend} devices"


def run_all(settings: Settings) -> dict[str, Any]:
    """Run every section under ``settings``; return the results, targets included."""
    log = LOG.info
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": describe_machine(),
        "settings": {
            key: value._asdict() if hasattr(value, "_asdict") else value
            for key, value in settings._asdict().items()
        },
    }

    log("1. worked example")
    results["worked_example"] = worked_example.run(
        settings.worked_steps, settings.repeats, settings.min_total_s, log=log
    )

    log("2. MLP throughput")
    results["mlp"] = [
        mlp.run_spec(
            spec,
            settings.repeats,
            settings.agreement_steps,
            settings.matmul_seconds,
            log=log,
        )
        for spec in settings.mlp_specs
    ]

    log("3. jbp reproduce as a process")
    results["process"] = process.run(
        settings.reproduce_steps, settings.process_repeats, log=log
    )

    log("4. scaling")
    counts, device_note = _device_counts(settings)
    spec = settings.device_spec
    results["scaling"] = {
        "batch_spec": settings.batch_spec._asdict(),
        "batch": mlp.run_batch_scaling(
            settings.batch_spec,
            settings.batches,
            settings.batch_samples,
            settings.repeats,
            log=log,
        ),
        "device_spec": spec._asdict(),
        "device_note": device_note,
        "devices": devices.run(
            counts,
            spec.sizes,
            spec.batch,
            spec.steps,
            settings.repeats,
            jax.default_backend(),
            log=log,
        ),
    }

    log("5. compile time against depth")
    results["compile_depth"] = compile_depth.run(
        settings.depths,
        settings.depth_width,
        settings.depth_batch,
        settings.depth_steps,
        settings.repeats,
        log=log,
    )

    results["targets"] = report.evaluate_targets(results)
    results["load_average_1min_end"] = (
        os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    )
    results["total_s"] = time.perf_counter() - started
    return results


def write_outputs(results: dict[str, Any], out: Path) -> list[Path]:
    """Write the JSON, the plot and the Markdown page into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{STEM}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    plot_path = out / f"{STEM}.png"
    report.plot(results, plot_path)
    markdown_path = out / f"{STEM}.md"
    markdown_path.write_text(report.markdown(results, plot_path.name))
    return [json_path, markdown_path, plot_path]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark jbp against a Python loop of jitted steps, NumPy, "
        "PyTorch eager and plain C, and against the machine's matmul peak.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="directory for benchmarks.json, benchmarks.md and benchmarks.png "
        "(created if missing)",
    )
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="measure nothing: rewrite benchmarks.md and benchmarks.png from the "
        "benchmarks.json already in --out",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run every part once at tiny sizes to check the script works; the "
        "times mean nothing",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its outputs; return the exit status."""
    args = parse_args(argv)
    # Only this script's own lines at INFO; JAX's INFO lines (such as the TPU
    # probe) would only clutter the progress log.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    LOG.setLevel(logging.INFO)
    if args.rerender:
        results = json.loads((args.out / f"{STEM}.json").read_text())
        results["targets"] = report.evaluate_targets(results)
    else:
        results = run_all(SMOKE if args.smoke else FULL)
    for path in write_outputs(results, args.out):
        LOG.info("wrote %s", path)
    for target in results["targets"]:
        LOG.info("target %s: %s", report.verdict(target), target["target"])
    LOG.info("%s", report.headline(results))
    LOG.info("measuring took %.0f s", results["total_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
