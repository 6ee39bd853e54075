"""Timing and report helpers shared by the benchmark scripts."""

import json
import os
from pathlib import Path
import statistics
import time
from typing import Callable, Dict, List, Optional

from affordance_grounding.fileio import write_bytes_atomically


def time_call(function: Callable[[], object], repeats: int, warmup: int = 1,
              synchronize: Optional[Callable[[], None]] = None) -> List[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed calls.

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) runs before the clock starts and before it
    stops, so asynchronous device work is counted.
    """
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        function()
        sync()
        samples.append(time.perf_counter() - start)
    return samples


def median_seconds(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median of :func:`time_call`."""
    return statistics.median(time_call(function, repeats, warmup))


def time_interleaved(functions: Dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                     synchronize: Optional[Callable[[], None]] = None
                     ) -> Dict[str, List[float]]:
    """Time several functions in alternation: round r calls each once, in order.

    On a shared machine the load changes over seconds; interleaving spreads it over every
    function alike, so their ratios stay meaningful even when absolute times drift.

    Args:
        functions: Name -> zero-argument callable.
        rounds: Timed calls per function.
        warmup: Untimed calls per function before the first round.
        synchronize: Called before starting and stopping each clock (device work).

    Returns:
        Name -> ``rounds`` wall-clock seconds.
    """
    sync = synchronize or (lambda: None)
    for function in functions.values():
        for _ in range(warmup):
            function()
    samples: Dict[str, List[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            sync()
            start = time.perf_counter()
            function()
            sync()
            samples[name].append(time.perf_counter() - start)
    return samples


def summarize(samples: List[float]) -> Dict[str, float]:
    """Median, min, max and relative spread (IQR / median) of a list of seconds."""
    ordered = sorted(samples)
    median = statistics.median(ordered)
    if len(ordered) >= 4:
        quartiles = statistics.quantiles(ordered, n=4)
        spread = (quartiles[2] - quartiles[0]) / median if median else 0.0
    else:
        spread = (ordered[-1] - ordered[0]) / median if median else 0.0
    return {'median_s': median, 'min_s': ordered[0], 'max_s': ordered[-1],
            'spread': spread, 'count': len(ordered)}


def load_average() -> Optional[List[float]]:
    """Return the 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def write_report(report: dict, path: str) -> Path:
    """Write a benchmark report as indented JSON and say where."""
    out = write_bytes_atomically(path, json.dumps(report, indent=2).encode())
    print(f'wrote {out}')
    return out


def wait_for_load(threshold: float, max_wait: float, poll_s: float = 15.0) -> float:
    """Sleep until the 1-minute load average is at most ``threshold``; returns seconds waited."""
    started = time.perf_counter()
    while (time.perf_counter() - started < max_wait
           and (load_average() or [0.0])[0] > threshold):
        time.sleep(poll_s)
    waited = time.perf_counter() - started
    print(f'waited {waited:.0f} s for load <= {threshold}: now {load_average()}', flush=True)
    return round(waited, 1)
