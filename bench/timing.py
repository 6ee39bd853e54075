"""Timing and report helpers shared by the benchmark scripts."""

import json
from pathlib import Path
import statistics
import time
from typing import Callable, List


def time_call(function: Callable[[], object], repeats: int, warmup: int = 1) -> List[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def median_seconds(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median of :func:`time_call`."""
    return statistics.median(time_call(function, repeats, warmup))


def write_report(report: dict, path: str) -> Path:
    """Write a benchmark report as indented JSON and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f'wrote {out}')
    return out
