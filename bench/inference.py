"""Per-frame inference latency of every backend on this machine, next to the reference structure.

    .venv/bin/python -m bench.inference [--repeats 10] [--out outputs/bench/inference.json]
        [--batches 1 8] [--cuda-batches 1 8 64] [--config MODEL.yaml] [--seed 0]
        [--int8-methods dynamic static] [--int8-images DIR] [--no-int8]

Builds the full-size architecture with random weights (or ``--config``; bench/model_cache.py),
exports it to ONNX once per precision (cached under ``outputs/bench/cache`` by seed and weight
fingerprint; int8 through training/quantize.py) and times, through the real backend classes,
every backend this machine can run (bench/rows.py): PyTorch eager fp32, ONNX Runtime fp32 and
int8 on the CPU; on CUDA PyTorch fp32/fp16 with and without CUDA graphs, ONNX Runtime CUDA and
TensorRT fp16. Rows that cannot run are listed with the reason. The reference test-time
structure (bench/reference_structure.py) runs in the same rounds on each device.

Calls are interleaved (round r times every row once) so that load from other jobs on a shared
machine hits all rows alike. The CPU roofline (bench/roofline.py) is the best of torch sgemm,
an ONNX Runtime MatMul microbenchmark and the theoretical peak; the old sgemm-only fraction is
kept next to it. Every backend's outputs are compared with PyTorch fp32 on the CPU with the
exporter's tolerances (bench/parity.py).
"""

import argparse
from dataclasses import dataclass, field, replace
import logging
import os
from pathlib import Path
import sys
import time
import traceback
from typing import Dict, List, Optional, Sequence, Tuple

from affordance_grounding.config import load_model_config, ModelConfig
from affordance_grounding.inference.backends import TorchBackend
from affordance_grounding.inference.io_spec import BackendUnavailableError
from affordance_grounding.inference.selection import Environment, probe_environment
from bench.inference_report import evaluate_targets, format_table
from bench.machine import describe_machine
from bench.model_cache import (
    build_model, count_flops_per_frame, DEFAULT_CACHE,
    DEFAULT_CALIBRATION_DATA, ensure_onnx, Int8Settings)
from bench.parity import compare_outputs, reference_parity
from bench.reference_structure import reference_test_forward
from bench.roofline import add_roofline_fractions, measure_peak
from bench.rows import (
    CPU_ROWS, create_row_backend, CUDA_ROWS, needed_onnx_files, plan_rows, REFERENCE, RowSpec)
from bench.timing import load_average, summarize, time_interleaved, wait_for_load, write_report
import torch

FLOP_PER_FRAME = 43.2e9  # docs/method.md: about 21.6 GMAC per 224x224 frame (full size)
SGEMM_PROBE_SIZE = 1024
PARITY_BATCH = 2


@dataclass
class Session:
    """What every device's rounds share: the model, its files, the parity baseline."""

    grounder: object
    clip_model: object
    tokenizer: object
    label: int
    parity_images: torch.Tensor
    onnx_paths: Dict[str, Path] = field(default_factory=dict)
    baseline: object = None
    results: List[dict] = field(default_factory=list)
    skipped: List[dict] = field(default_factory=list)
    sgemm_in_rounds: Dict[str, Dict[str, float]] = field(default_factory=dict)


def make_sgemm_probe(size: int = SGEMM_PROBE_SIZE, calls: int = 4):
    """Return a CPU sgemm workload for the timing rounds and its FLOPs per call."""
    left, right = torch.randn(size, size), torch.randn(size, size)

    def probe():
        for _ in range(calls):
            torch.mm(left, right)
    return probe, 2.0 * size ** 3 * calls


def run(repeats: int = 10, batches: Sequence[int] = (1, 8),
        cuda_batches: Sequence[int] = (1, 8, 64), config: Optional[ModelConfig] = None,
        seed: int = 0, cache_dir: str = DEFAULT_CACHE, threads: Optional[int] = None,
        measure_gemm: bool = True, environment: Optional[Environment] = None, cpu: bool = True,
        int8: Optional[Int8Settings] = Int8Settings(),
        int8_methods: Sequence[str] = ('dynamic',)) -> dict:
    """Measure every row; returns the JSON-ready report.

    ``cpu=False``: CUDA rows only; ``int8=None`` or no ``int8_methods``: no int8 row.
    """
    started = time.perf_counter()
    environment = environment or probe_environment()
    if threads:  # PyTorch rows, the reference and the sgemm roofline use as many threads
        torch.set_num_threads(threads)
    machine = describe_machine(measure_gemm=measure_gemm)
    peak = measure_peak(threads, {'best': machine.get('sgemm_gflops')}) if (
        measure_gemm and cpu) else None
    if environment.cuda_available:  # fp32 means fp32: no TF32 in matmuls or convolutions
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    session = start_session(config, seed)
    flops_counted = count_flops_per_frame(session.grounder)
    flop_per_frame = FLOP_PER_FRAME if config is None else flops_counted
    planned, session.skipped = plan_rows(CPU_ROWS + CUDA_ROWS, environment, cpu,
                                         int8_methods if int8 else ())
    export_seconds = {}
    for spec in needed_onnx_files(planned):
        settings = replace(int8 or Int8Settings(), method=spec.int8_method or 'dynamic')
        precision = 'fp16' if spec.backend == 'tensorrt' else spec.precision
        session.onnx_paths[spec.onnx_key], export_seconds[spec.onnx_key] = ensure_onnx(
            session.grounder, cache_dir, seed, precision, settings)
    session.baseline = TorchBackend(None, 'cpu', grounder=session.grounder).load().infer(
        session.parity_images)
    reference_difference = reference_parity(
        session.grounder, session.clip_model, session.tokenizer, session.parity_images[:1],
        session.label, session.baseline)
    for device, device_batches in (('cpu', batches), ('cuda', cuda_batches)):
        specs = [spec for spec in planned if spec.device == device]
        if specs:
            measure_device(session, device, specs, device_batches, repeats, threads)
    add_roofline_fractions(session.results, machine, peak, flop_per_frame,
                           session.sgemm_in_rounds)
    report = {
        'machine': machine, 'peak': peak,
        'model': 'config (random weights)' if config else 'full-size (random weights)',
        'seed': seed, 'image_size': session.grounder.config.image_size,
        'classes': len(session.grounder.labels),
        'flop_per_frame': flop_per_frame, 'flop_per_frame_counted': flops_counted,
        'results': session.results, 'skipped': session.skipped,
        'sgemm_in_rounds_gflops': session.sgemm_in_rounds,
        'reference_parity_max_relative_difference': reference_difference,
        'onnx': {precision: str(path) for precision, path in session.onnx_paths.items()},
        'int8': None if int8 is None else dict(vars(int8), methods=list(int8_methods)),
        'export_seconds': export_seconds,
        'repeats': repeats, 'threads': threads, 'load_average_end': load_average(),
        'seconds': round(time.perf_counter() - started, 1),
    }
    report['targets'] = evaluate_targets(report)
    return report


def start_session(config: Optional[ModelConfig], seed: int) -> Session:
    """Build the model and the parity images."""
    grounder, clip_model, tokenizer = build_model(config, seed)
    size = grounder.config.image_size
    images = torch.randn(PARITY_BATCH, 3, size, size,
                         generator=torch.Generator().manual_seed(seed + 1))
    label = grounder.labels.index('hold') if 'hold' in grounder.labels else 0
    return Session(grounder, clip_model, tokenizer, label, images)


def measure_device(session: Session, device: str, specs: Sequence[RowSpec],
                   batches: Sequence[int], repeats: int, threads: Optional[int]) -> None:
    """Load, check and time the rows of one device; results and skips go into ``session``."""
    if device == 'cuda':
        session.clip_model.cuda()  # the reference runs on the same device (shares visual)
    loaded = load_rows(session, device, specs, threads)
    try:  # one failure (out of memory, a driver error) must not lose the other devices
        timed = time_device(device, batches, loaded, session, repeats)
        session.sgemm_in_rounds.update(timed.pop('sgemm', {}))
        for (spec, batch), stats in timed.items():
            if spec.backend == REFERENCE:  # one image a call, in every batch's rounds
                row = make_row(spec, 1, stats, None)
                if batch != 1:
                    row.update(in_rounds_of_batch=batch,
                               backend=f'{spec.label} (in the batch-{batch} rounds)')
            else:
                row = make_row(spec, batch, stats, loaded[spec][1])
            session.results.append(row)
        if device == 'cuda':
            session.results.extend(measure_device_only(loaded, batches, repeats))
    except Exception as error:
        session.skipped.append({'backend': f'timing on {device}', 'device': device,
                                'reason': f'failed: {type(error).__name__}: {error}'})
        traceback.print_exc()
    for backend, _ in loaded.values():
        backend.close()


def load_rows(session: Session, device: str, specs: Sequence[RowSpec],
              threads: Optional[int]) -> Dict[RowSpec, Tuple[object, dict]]:
    """Load each row's backend and check its parity; failures become skipped rows."""
    loaded = {}
    for spec in specs:
        stage = 'load'
        try:
            backend = create_row_backend(spec, session.grounder, session.onnx_paths, threads)
            stage = 'run'
            parity = compare_outputs(backend.infer(session.parity_images), session.baseline,
                                     spec.precision, spec.device)
            loaded[spec] = (backend, parity)
        except BackendUnavailableError as error:
            session.skipped.append({'backend': spec.label, 'device': device,
                                    'reason': str(error)})
        except Exception as error:  # report and go on with the other rows
            session.skipped.append({'backend': spec.label, 'device': device,
                                    'reason': f'failed to {stage}: {type(error).__name__}: '
                                              f'{error}'})
            traceback.print_exc()
    return loaded


def time_device(device: str, batches: Sequence[int], loaded, session: Session,
                repeats: int) -> Dict:
    """Interleaved rounds per batch size; returns {(spec, batch): stats, 'sgemm': {...}}."""
    out: Dict = {}
    sync = torch.cuda.synchronize if device == 'cuda' else None
    size = session.grounder.config.image_size
    reference_spec = RowSpec('reference structure fp32', REFERENCE, device)
    sgemm_probe, sgemm_flops = make_sgemm_probe()
    for batch in batches:
        images = torch.randn(batch, 3, size, size).numpy()
        functions = {spec.label: (lambda b=backend: b.infer(images))
                     for spec, (backend, _) in loaded.items()}
        image = torch.from_numpy(images[:1]).to(device)  # the reference takes one image
        functions[reference_spec.label] = (lambda: reference_test_forward(
            session.grounder, session.clip_model, session.tokenizer, image, session.label))
        if device == 'cpu':
            functions['sgemm'] = sgemm_probe
        rounds = repeats if batch == 1 or device == 'cuda' else max(3, repeats // 2)
        warmup = 3 if device == 'cuda' else (2 if batch == 1 else 1)
        print(f'{device}: batch {batch}, {rounds} interleaved rounds of '
              f'{len(functions)} functions ...', flush=True)
        samples = time_interleaved(functions, rounds, warmup, sync)
        for spec in loaded:
            out[(spec, batch)] = summarize(samples[spec.label])
        out[(reference_spec, batch)] = summarize(samples[reference_spec.label])
        if 'sgemm' in samples:
            stats = summarize(samples['sgemm'])
            out.setdefault('sgemm', {})[f'batch {batch}'] = {
                'median': round(sgemm_flops / stats['median_s'] / 1e9, 1),
                'best': round(sgemm_flops / stats['min_s'] / 1e9, 1)}
    return out


def measure_device_only(loaded, batches: Sequence[int], repeats: int) -> List[dict]:
    """Time the PyTorch CUDA rows again with outputs left on the GPU (no host copies)."""
    rows = []
    for spec, (backend, _) in loaded.items():
        if spec.backend != 'torch' or not spec.pinned_outputs:  # same work as pinned
            continue
        size = backend.metadata.image_size
        for batch in batches:
            images = torch.randn(batch, 3, size, size, device=backend.device)
            samples = time_interleaved({'x': lambda: backend.infer_on_device(images)}, repeats,
                                       3, torch.cuda.synchronize)['x']
            device_spec = RowSpec(spec.label + ' (outputs on GPU)', spec.backend, spec.device,
                                  spec.precision, spec.cuda_graphs)
            rows.append(make_row(device_spec, batch, summarize(samples), None))
    return rows


def make_row(spec: RowSpec, batch: int, stats: Dict, parity: Optional[Dict]) -> dict:
    """One JSON result row."""
    seconds = stats['median_s'] / batch
    return {'backend': spec.label, 'kind': spec.backend, 'device': spec.device,
            'precision': spec.precision, 'cuda_graphs': spec.cuda_graphs, 'batch': batch,
            'ms_per_frame': round(seconds * 1e3, 3), 'frames_per_s': round(1.0 / seconds, 1),
            'best_ms_per_frame': round(stats['min_s'] / batch * 1e3, 3),
            'spread': round(stats['spread'], 3), 'samples': stats['count'], 'parity': parity}


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=10,
                        help='interleaved rounds at batch 1 (half as many at CPU batch 8)')
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8], help='CPU batches')
    parser.add_argument('--cuda-batches', type=int, nargs='+', default=[1, 8, 64])
    parser.add_argument('--no-cpu', action='store_true', help='CUDA rows only (GPU suite)')
    parser.add_argument('--config', help='model config YAML (default: full size, random)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int,
                        help='intra-op threads of every CPU row (PyTorch, ONNX Runtime, the '
                             'reference) and of the roofline probes (default: all cores)')
    parser.add_argument('--cache-dir', default=DEFAULT_CACHE, help='exported ONNX cache')
    parser.add_argument('--no-int8', action='store_true', help='no ONNX Runtime int8 row')
    parser.add_argument('--int8-methods', nargs='+', default=['dynamic'],
                        choices=('dynamic', 'static'), help='one int8 row per method')
    parser.add_argument('--int8-images', default=DEFAULT_CALIBRATION_DATA,
                        help='training images for the int8 calibration and parity gate '
                             '(random images when the folder does not exist)')
    parser.add_argument('--wait-for-load', type=float, metavar='LOAD',
                        help='first wait (at most --max-wait s) until the 1-minute load '
                             'average is at most LOAD (shared machines)')
    parser.add_argument('--max-wait', type=float, default=900)
    parser.add_argument('--out', default='outputs/bench/inference.json')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark, print the table and write the JSON file."""
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    args = build_parser().parse_args(argv)
    config = load_model_config(args.config) if args.config else None
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    int8 = None if args.no_int8 else Int8Settings(
        calibration_data=args.int8_images if Path(args.int8_images).is_dir() else None)
    waited = wait_for_load(args.wait_for_load, args.max_wait) if args.wait_for_load else 0.0
    report = run(args.repeats, args.batches, args.cuda_batches, config, args.seed,
                 args.cache_dir, args.threads, cpu=not args.no_cpu, int8=int8,
                 int8_methods=args.int8_methods)
    report['waited_for_load_s'] = waited
    print(format_table(report))
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
