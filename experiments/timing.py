"""Wall-clock timing and peak memory: the one place every benchmark takes its figures from.

Two kinds of timed thing:

* a *callable* ``fn()`` whose own wall time is measured here (``median_time``, ``best_time``,
  ``per_call_us``);
* a *run* ``run()`` that times itself and returns its seconds, or a tuple led by them, as the
  anchors' engine runners do (``median_of``, ``fastest_of``): only the part it chose to time counts.

Which statistic: the median is robust to one disturbed sample either way; the minimum (best of)
is the least disturbed by other work on the machine. Each bench says which one its table holds.
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Callable, List


def wall_times(fn: Callable[[], object], repeats: int, warmup: bool = True) -> List[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after one untimed call if ``warmup``."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` (after one untimed warm-up call)."""
    return statistics.median(wall_times(fn, repeats, warmup))


def best_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Fastest seconds of ``repeats`` calls of ``fn`` (after one untimed warm-up call)."""
    return min(wall_times(fn, repeats, warmup))


def _seconds(out) -> float:
    return float(out[0] if isinstance(out, tuple) else out)


def median_of(run: Callable[[], object], repeats: int) -> float:
    """Median of what ``repeats`` calls of ``run`` report: its own seconds, or a tuple led by them."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return statistics.median(_seconds(run()) for _ in range(repeats))


def fastest_of(run: Callable[[], object], repeats: int, min_time: float = 0.0,
               slow_s: float = float("inf")) -> float:
    """Fastest of the seconds ``run`` reports (a float, or a tuple led by one).

    At least ``repeats`` runs and until they add up to ``min_time`` s; one run is enough once a
    run takes ``slow_s`` s (its noise is then small and a second would cost as much again).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times: List[float] = []
    while len(times) < repeats or sum(times) < min_time:
        times.append(_seconds(run()))
        if times[-1] >= slow_s:
            break
    return min(times)


def per_call_us(fn: Callable[[], object], min_time: float, rounds: int = 5) -> float:
    """Microseconds per call of a fast ``fn``: the best of ``rounds`` rounds, each a loop of as
    many calls as fill about ``min_time / rounds`` s (so that the timer's resolution and the loop's
    own overhead vanish in the mean of a round)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    reps = max(1, int(min_time / rounds / one))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best * 1e6


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (``ru_maxrss``, a high-water mark), in MB.

    It includes the interpreter and every library loaded; run each measurement in a fresh
    process to get its own peak.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB on Linux
