"""Whole processes: wall time and peak memory of ``jbp reproduce`` and JAX start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

# ru_maxrss is in kibibytes on Linux and in bytes on macOS.
_MAXRSS_BYTES = 1 if sys.platform == "darwin" else 1024


# Runs one command as the only child of a small Python process and prints that
# child's wall time and peak resident set size. A child forked straight from the
# benchmark would count the benchmark's own memory, which a fork shares, in its
# peak, so the command is started from this small process instead.
_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
status = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"status": status, "wall_s": wall, "maxrss": peak}))
"""


def measure_process(command: list[str], repeats: int) -> dict[str, Any]:
    """Run ``command`` ``repeats`` times; return its wall time and peak memory.

    Peak memory is ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a small
    wrapper process whose only child is ``command``. Output is discarded.

    Raises:
        RuntimeError: if the command exits with a non-zero status.
    """
    walls, peaks = [], []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *command],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the process wrapper failed: {done.stderr[-500:]}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        if measured["status"] != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited with status {measured['status']}; "
                "run it by hand to see its error"
            )
        walls.append(measured["wall_s"])
        peaks.append(measured["maxrss"] * _MAXRSS_BYTES)
    return {
        "command": command,
        "repeats": repeats,
        "wall_s_best": min(walls),
        "wall_s_median": sorted(walls)[len(walls) // 2],
        "peak_rss_bytes": max(peaks),
    }


def run(
    reproduce_steps: int | None, repeats: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Time the interpreter alone, JAX's start-up, and ``jbp reproduce``.

    Args:
        reproduce_steps: passed as ``--steps``; None runs the default 10,000.
        repeats: runs of each command; the best wall time and largest peak count.
        log: where progress lines go.
    """
    reproduce = [sys.executable, "-m", "jbp", "reproduce"]
    if reproduce_steps is not None:
        reproduce += ["--steps", str(reproduce_steps)]
    commands = {
        "python": [sys.executable, "-c", "pass"],
        "jax_startup": [sys.executable, "-c", "import jax; jax.numpy.ones(1)"],
        "jbp_reproduce": reproduce,
    }
    results = {}
    for name, command in commands.items():
        results[name] = measure_process(command, repeats)
        log(
            f"  {name}: {results[name]['wall_s_best']:.2f} s, "
            f"peak {results[name]['peak_rss_bytes'] / 2**20:.0f} MiB"
        )
    return results
