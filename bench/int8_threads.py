"""int8 vs fp32 ONNX Runtime at 1 and 2 intra-op threads, per session setting, interleaved.

    .venv/bin/python -m bench.int8_threads [--blocks 3] [--rounds 6] [--block-base 4]
        [--wait-for-load LOAD] [--out outputs/bench/int8_threads.json]

The question (issue 20): does the int8 graph keep its lead over fp32 when ONNX Runtime gets a
second thread? Every variant (graph x session setting x thread count) is a real
:class:`OnnxRuntimeBackend` on the full-size graph with random weights (the cached exports of
``bench.inference``: fp32 from the exporter, int8 dynamic from ``training.quantize``), batch 1.
All variants run once per round, in one process, so load from other jobs hits them alike; the
rounds are grouped in ``--blocks`` blocks, each with its load average, and every ratio is given
per block; the overall ratio is the median of the per-block ones, so a ratio only ever compares
variants timed under the same load.

Session settings: ``spinning on`` is ``BackendOptions``' default (idle pool threads spin after
each parallel region), ``spinning off`` is what the node and the bag tool use
(``cpu_spin_wait=False``); ``--block-base N`` adds ``spinning off`` with ONNX Runtime's
``session.dynamic_block_base`` (smaller work pieces handed out as threads become free).
"""

import argparse
import statistics
import sys
from typing import Dict, List, Optional

from affordance_grounding.inference.backends import BackendOptions
from bench.cpu_options import TunedOnnxRuntimeBackend
from bench.machine import describe_machine
from bench.model_cache import build_full_size, DEFAULT_CACHE, ensure_onnx, Int8Settings
from bench.timing import (
    load_average, summarize, time_interleaved, wait_for_load, write_report)
import numpy as np

GRAPHS = ('fp32', 'int8')
THREADS = (1, 2)
TARGET_SPEEDUP = 1.8  # issue 20: int8 at least 1.8x fp32 at 2 threads as well as at 1
SPINNING_ON, SPINNING_OFF = 'spinning on (BackendOptions default)', 'spinning off (node, bag)'


def session_settings(block_base: Optional[int]) -> Dict[str, tuple]:
    """Name -> (cpu_spin_wait, extra session config entries) of each compared setting."""
    settings = {SPINNING_ON: (True, {}), SPINNING_OFF: (False, {})}
    if block_base:
        settings[f'spinning off, dynamic_block_base={block_base}'] = (
            False, {'session.dynamic_block_base': str(block_base)})
    return settings


def variant_name(graph: str, setting: str, threads: int) -> str:
    """Return the row name of one variant."""
    return f'{graph} | {setting} | {threads} thread{"s" if threads > 1 else ""}'


def build_calls(paths: Dict[str, str], settings: Dict[str, tuple], images: np.ndarray
                ) -> Dict[str, object]:
    """Load every variant's backend; returns name -> one inference call."""
    calls = {}
    for graph, path in paths.items():
        for setting, (spin, config) in settings.items():
            for threads in THREADS:
                options = BackendOptions(intra_op_threads=threads, cpu_spin_wait=spin)
                backend = TunedOnnxRuntimeBackend(path, config, {}, options).load()
                calls[variant_name(graph, setting, threads)] = \
                    lambda backend=backend: backend.infer(images)
    return calls


def time_blocks(calls: Dict[str, object], blocks: int, rounds: int) -> List[dict]:
    """Run ``blocks`` blocks of interleaved rounds; each block keeps its samples and load."""
    results = []
    for index in range(blocks):
        start = load_average()
        samples = time_interleaved(calls, rounds, warmup=1 if index == 0 else 0)
        results.append({'load_average_start': start, 'load_average_end': load_average(),
                        'samples_s': samples})
        print(f'block {index + 1}/{blocks}: load {start} -> {load_average()}', flush=True)
    return results


def ratio(numerator: float, denominator: float) -> float:
    """Return numerator / denominator, rounded for the report."""
    return round(numerator / denominator, 3)


def compare(medians: Dict[str, float], settings) -> Dict[str, dict]:
    """int8 speed-up over fp32 per thread count and 2-thread scaling, per session setting."""
    table = {}
    for setting in settings:
        ms = {(graph, threads): medians[variant_name(graph, setting, threads)]
              for graph in GRAPHS for threads in THREADS}
        table[setting] = {
            **{f'int8_speedup_{threads}t': ratio(ms['fp32', threads], ms['int8', threads])
               for threads in THREADS},
            **{f'{graph}_2t_scaling': ratio(ms[graph, 1], ms[graph, 2]) for graph in GRAPHS}}
    return table


def summarize_blocks(blocks: List[dict], settings) -> dict:
    """Per-variant times over all rounds; the comparison per block and its median over blocks.

    A ratio compares medians of one block (one load); pooling rounds of different blocks first
    would compare one variant's busy block with another's quiet one.
    """
    names = list(blocks[0]['samples_s'])
    pooled = {name: [s for block in blocks for s in block['samples_s'][name]] for name in names}
    stats = {name: summarize(values) for name, values in pooled.items()}
    per_block = [compare({name: statistics.median(values)
                          for name, values in block['samples_s'].items()}, settings)
                 for block in blocks]
    overall = {setting: {key: round(statistics.median(block[setting][key] for block in per_block),
                                    3)
                         for key in per_block[0][setting]} for setting in settings}
    rows = [{'variant': name, 'ms_per_frame': round(stat['median_s'] * 1e3, 1),
             'fastest_ms': round(stat['min_s'] * 1e3, 1), 'spread': round(stat['spread'], 3)}
            for name, stat in stats.items()]
    return {'rows': rows, 'overall': overall, 'per_block': per_block}


def meets_target(comparison: Dict[str, float]) -> bool:
    """Return True when int8 is at least TARGET_SPEEDUP x fp32 at every thread count."""
    return all(comparison[f'int8_speedup_{threads}t'] >= TARGET_SPEEDUP for threads in THREADS)


def run(blocks: int = 3, rounds: int = 6, block_base: Optional[int] = None, seed: int = 0,
        cache_dir: str = DEFAULT_CACHE) -> dict:
    """Export (cached), load every variant, time them; returns the JSON-ready report."""
    machine = describe_machine(measure_gemm=False)
    grounder, _, _ = build_full_size(seed)
    paths = {'fp32': str(ensure_onnx(grounder, cache_dir, seed)[0]),
             'int8': str(ensure_onnx(grounder, cache_dir, seed, 'int8', Int8Settings())[0])}
    del grounder
    settings = session_settings(block_base)
    images = np.random.default_rng(seed).standard_normal((1, 3, 224, 224), np.float32)
    timed = time_blocks(build_calls(paths, settings, images), blocks, rounds)
    summary = summarize_blocks(timed, settings)
    verdicts = {setting: meets_target(values) for setting, values in summary['overall'].items()}
    return {'machine': machine, 'batch': 1, 'blocks': blocks, 'rounds_per_block': rounds,
            'int8': 'dynamic (training.quantize default)', 'target_speedup': TARGET_SPEEDUP,
            'load_averages': [[block['load_average_start'], block['load_average_end']]
                              for block in timed],
            **summary, 'meets_target': verdicts}


def format_table(report: dict) -> str:
    """Return the per-variant times and the per-setting comparison as text."""
    lines = [f"batch 1, {report['blocks']} blocks x {report['rounds_per_block']} interleaved "
             f"rounds, load per block {report['load_averages']}",
             f"{'variant':70s} {'ms/frame':>9s} {'fastest':>8s} {'spread':>7s}"]
    lines += [f"{row['variant']:70s} {row['ms_per_frame']:9.1f} {row['fastest_ms']:8.1f} "
              f"{row['spread']:7.0%}" for row in report['rows']]
    lines.append(f"{'setting (median over the blocks)':45s} {'int8/fp32 1t':>12s} {'2t':>6s} "
                 f"{'fp32 2t/1t':>10s} {'int8 2t/1t':>10s}  per block int8/fp32 1t / 2t")
    for setting, values in report['overall'].items():
        blocks = ' '.join(f"{block[setting]['int8_speedup_1t']:.2f}/"
                          f"{block[setting]['int8_speedup_2t']:.2f}"
                          for block in report['per_block'])
        lines.append(f"{setting:45s} {values['int8_speedup_1t']:11.2f}x "
                     f"{values['int8_speedup_2t']:5.2f}x {values['fp32_2t_scaling']:9.2f}x "
                     f"{values['int8_2t_scaling']:9.2f}x  {blocks}"
                     f"{'' if report['meets_target'][setting] else '  (target missed)'}")
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the comparison, print the table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--blocks', type=int, default=3, help='blocks of interleaved rounds')
    parser.add_argument('--rounds', type=int, default=6, help='rounds per block')
    parser.add_argument('--block-base', type=int, help='also ONNX Runtime dynamic_block_base')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cache-dir', default=DEFAULT_CACHE)
    parser.add_argument('--wait-for-load', type=float, metavar='LOAD',
                        help='first wait (at most --max-wait s) for a 1-minute load <= LOAD')
    parser.add_argument('--max-wait', type=float, default=900)
    parser.add_argument('--out', default='outputs/bench/int8_threads.json')
    args = parser.parse_args(argv)
    if args.wait_for_load:
        wait_for_load(args.wait_for_load, args.max_wait)
    report = run(args.blocks, args.rounds, args.block_base, args.seed, args.cache_dir)
    print(format_table(report))
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
