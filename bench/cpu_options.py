"""A/B of CPU runtime settings, interleaved in one process: which ones make a frame faster.

    .venv/bin/python -m bench.cpu_options [--rounds 10] [--batch 1]
        [--out outputs/bench/cpu_options.json]

Variants of the ONNX Runtime session options (thread-pool spinning, intra-op threads, memory
arena, graph optimisation level) through :class:`OnnxRuntimeBackend`, and of the PyTorch CPU
path (the fused multi-head-attention fast path, intra-op threads) through :class:`TorchBackend`,
on the full-size architecture with random weights (the ONNX file is the cached export of
``bench.inference``). Every variant runs once per round, so load from other jobs hits them
alike; each is reported as a ratio to the shipped setting of its backend.
"""

import argparse
from contextlib import contextmanager
import sys
from typing import Callable, Dict, List, Optional

from affordance_grounding.inference.backends import (
    BackendOptions, OnnxRuntimeBackend, TorchBackend)
from bench.machine import describe_machine
from bench.model_cache import build_full_size, DEFAULT_CACHE, ensure_onnx
from bench.timing import load_average, summarize, time_interleaved, write_report
import numpy as np
import torch

ORT_BASELINE = 'onnxruntime: shipped options'
TORCH_BASELINE = 'torch eager: shipped'


class TunedOnnxRuntimeBackend(OnnxRuntimeBackend):
    """OnnxRuntimeBackend with extra session settings on top of the shipped ones."""

    def __init__(self, model_path: str, config: Dict[str, str], attributes: Dict[str, object],
                 options: Optional[BackendOptions] = None):
        """Remember the session config entries and SessionOptions attributes to apply."""
        super().__init__(model_path, 'cpu', options)
        self._config, self._attributes = config, attributes

    def _session_options(self, ort):
        options = super()._session_options(ort)
        for key, value in self._config.items():
            options.add_session_config_entry(key, value)
        for name, value in self._attributes.items():
            setattr(options, name, value)
        return options


@contextmanager
def torch_settings(threads: Optional[int] = None, mha_fastpath: Optional[bool] = None):
    """Temporarily change torch's intra-op threads and the MHA fast path."""
    saved = torch.get_num_threads(), torch.backends.mha.get_fastpath_enabled()
    if threads is not None:
        torch.set_num_threads(threads)
    if mha_fastpath is not None:
        torch.backends.mha.set_fastpath_enabled(mha_fastpath)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.backends.mha.set_fastpath_enabled(saved[1])


def build_variants(onnx_path: str, grounder, images: np.ndarray, cores: int
                   ) -> Dict[str, Callable[[], object]]:
    """Name -> one inference call of each variant (backends loaded here)."""
    import onnxruntime as ort

    ort_variants = {
        ORT_BASELINE: ({}, {}),
        'onnxruntime: no thread-pool spinning': (
            {'session.intra_op.allow_spinning': '0'}, {}),
        'onnxruntime: no CPU memory arena': ({}, {'enable_cpu_mem_arena': False}),
        'onnxruntime: extended (not all) graph optimisations': (
            {}, {'graph_optimization_level': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}),
        f'onnxruntime: intra_op_num_threads={cores}': ({}, {'intra_op_num_threads': cores}),
        'onnxruntime: intra_op_num_threads=1': ({}, {'intra_op_num_threads': 1}),
    }
    calls: Dict[str, Callable[[], object]] = {}
    for name, (config, attributes) in ort_variants.items():
        backend = TunedOnnxRuntimeBackend(onnx_path, config, attributes).load()
        calls[name] = lambda b=backend: b.infer(images)
    torch_backend = TorchBackend(None, 'cpu', grounder=grounder).load()

    def torch_call(threads=None, mha_fastpath=None):
        with torch_settings(threads, mha_fastpath):
            return torch_backend.infer(images)
    calls[TORCH_BASELINE] = torch_call
    calls['torch eager: MHA fast path off'] = lambda: torch_call(mha_fastpath=False)
    calls['torch eager: 1 thread'] = lambda: torch_call(threads=1)
    return calls


def run(rounds: int = 10, batch: int = 1, seed: int = 0, cache_dir: str = DEFAULT_CACHE) -> dict:
    """Time every variant in interleaved rounds; returns the JSON-ready report."""
    machine = describe_machine()
    grounder, _, _ = build_full_size(seed)
    onnx_path, _ = ensure_onnx(grounder, cache_dir, seed)
    images = np.random.default_rng(seed).standard_normal((batch, 3, 224, 224), np.float32)
    calls = build_variants(str(onnx_path), grounder, images, machine['physical_cores'])
    load_start = load_average()
    samples = time_interleaved(calls, rounds, warmup=2)
    stats = {name: summarize(values) for name, values in samples.items()}
    results = []
    for name, stat in stats.items():
        baseline = stats[ORT_BASELINE if name.startswith('onnxruntime') else TORCH_BASELINE]
        results.append({'variant': name, 'ms_per_frame': round(stat['median_s'] * 1e3 / batch, 1),
                        'spread': round(stat['spread'], 3),
                        'speedup_vs_shipped': round(baseline['median_s'] / stat['median_s'], 3)})
    return {'machine': machine, 'batch': batch, 'rounds': rounds, 'results': results,
            'load_average_start': load_start, 'load_average_end': load_average()}


def format_table(report: dict) -> str:
    """Return the results as a fixed-width table."""
    lines = [f"batch {report['batch']}, {report['rounds']} interleaved rounds, load "
             f"{report['load_average_start']} -> {report['load_average_end']}",
             f"{'variant':56s} {'ms/frame':>9s} {'spread':>7s} {'vs shipped':>10s}"]
    for row in report['results']:
        lines.append(f"{row['variant']:56s} {row['ms_per_frame']:9.1f} {row['spread']:7.0%} "
                     f"{row['speedup_vs_shipped']:9.2f}x")
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the A/B, print the table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cache-dir', default=DEFAULT_CACHE)
    parser.add_argument('--out', default='outputs/bench/cpu_options.json')
    args = parser.parse_args(argv)
    report = run(args.rounds, args.batch, args.seed, args.cache_dir)
    print(format_table(report))
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
