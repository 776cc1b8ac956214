"""Wall-clock timing of a callable: the first call, then steady-state repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax


class Timing(NamedTuple):
    """Seconds taken by one callable.

    Attributes:
        first_s: the first call, which includes tracing and compilation for jitted
            code.
        best_s: the fastest of the repeats after the first call. On a machine
            shared with other work this is the least disturbed estimate of the
            steady state, so every ratio in the report uses it.
        median_s: the median of those repeats.
        repeats: how many repeats followed the first call.
    """

    first_s: float
    best_s: float
    median_s: float
    repeats: int

    @property
    def compile_s(self) -> float:
        """The first call's excess over the steady state: tracing plus compiling."""
        return max(0.0, self.first_s - self.best_s)

    def to_json(self) -> dict[str, float]:
        """Return the fields and :attr:`compile_s` as a JSON object."""
        return {**self._asdict(), "compile_s": self.compile_s}


def _timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = jax.block_until_ready(run())
    return time.perf_counter() - start, result


def measure(
    run: Callable[[], Any], repeats: int, min_total_s: float = 0.0
) -> tuple[Timing, Any]:
    """Time ``run`` once cold, then at least ``repeats`` times warm.

    Every call is waited for with ``jax.block_until_ready``, so JAX's asynchronous
    dispatch cannot hide work. Repeats continue past ``repeats`` until the warm
    calls add up to ``min_total_s``, so that fast callables get enough samples.

    Returns:
        The timing and the result of the last call.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be 1 or more, got {repeats}")
    first, result = _timed(run)
    times = []
    while len(times) < repeats or sum(times) < min_total_s:
        elapsed, result = _timed(run)
        times.append(elapsed)
    timing = Timing(first, min(times), statistics.median(times), len(times))
    return timing, result


def measure_interleaved(
    runs: dict[str, Callable[[], Any]], repeats: int, min_total_s: float = 0.0
) -> dict[str, tuple[Timing, Any]]:
    """Time several callables in turns, so that they share the machine's moods.

    Each callable is first called once cold, in order. Then come ``repeats``
    rounds, and in every round each callable runs until its warm calls in that
    round add up to ``min_total_s / repeats`` (at least once). On a machine shared
    with other work, a burst of load then slows every contender of a round alike,
    and a ratio of best times compares quiet moments with quiet moments.

    Returns:
        For each name, its timing and the result of its last call.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be 1 or more, got {repeats}")
    firsts, results = {}, {}
    for name, run in runs.items():
        firsts[name], results[name] = _timed(run)
    times: dict[str, list[float]] = {name: [] for name in runs}
    per_round = min_total_s / repeats
    for _ in range(repeats):
        for name, run in runs.items():
            spent = 0.0
            while spent <= per_round:
                elapsed, results[name] = _timed(run)
                times[name].append(elapsed)
                spent += elapsed
                if per_round == 0.0:
                    break
    return {
        name: (
            Timing(
                firsts[name],
                min(times[name]),
                statistics.median(times[name]),
                len(times[name]),
            ),
            results[name],
        )
        for name in runs
    }
