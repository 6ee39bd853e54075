"""Peak memory of a process that loads one backend and runs frames, one process per backend.

    .venv/bin/python -m bench.memory [--frames 20] [--batch 1] [--out outputs/bench/memory.json]
        [--config MODEL.yaml] [--seed 0]

Each backend runs in its own fresh Python process, as a node would: it loads the model file the
node loads (a checkpoint bundle for PyTorch, the exported ONNX for ONNX Runtime; the full-size
architecture with random weights unless ``--config``), runs ``--frames`` batches and reports its
resident set size after the imports, after loading and at its peak (VmHWM; ru_maxrss too).
On CUDA it also reports the peak memory PyTorch allocated and reserved
(``torch.cuda.max_memory_allocated``) and the device memory in use after the run minus before
loading (``torch.cuda.mem_get_info``, which also sees ONNX Runtime's CUDA allocations).
"""

import argparse
import json
import os
from pathlib import Path
import resource
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from bench.timing import load_average, write_report

DEFAULT_CACHE = 'outputs/bench/cache'
RESULT_PREFIX = 'MEMORY_RESULT '
# case -> (backend, device, precision, CUDA graphs, model file kind)
CASES: Dict[str, Tuple[str, str, str, bool, str]] = {
    'torch-cpu': ('torch', 'cpu', 'fp32', False, 'bundle'),
    'onnxruntime-cpu': ('onnxruntime', 'cpu', 'fp32', False, 'onnx'),
    'torch-cuda-fp32': ('torch', 'cuda', 'fp32', False, 'bundle'),
    'torch-cuda-fp16-graphs': ('torch', 'cuda', 'fp16', True, 'bundle'),
    'onnxruntime-cuda': ('onnxruntime', 'cuda', 'fp32', False, 'onnx'),
}


def read_status_mib(field: str) -> float:
    """Read a memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB; NaN if absent."""
    try:
        with open('/proc/self/status') as stream:
            for line in stream:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float('nan')


def current_rss_mib() -> float:
    """Resident set size of this process now (VmRSS), in MiB."""
    return read_status_mib('VmRSS')


def peak_rss_mib() -> float:
    """Peak resident set size of this process's own memory (VmHWM), in MiB.

    ``getrusage`` ru_maxrss (reported as well) is not used for the peak: Linux carries it over
    through fork and exec, so a child started by a large parent reports the parent's size.
    """
    peak = read_status_mib('VmHWM')
    return peak if peak == peak else maxrss_mib()


def maxrss_mib() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_case(case: str, model_path: str, frames: int, batch: int) -> dict:
    """Load one backend in this process, run ``frames`` batches and report its memory.

    Meant to run in a fresh process (``--child``): the peak RSS is the whole process's.
    """
    started_rss = current_rss_mib()
    import numpy as np
    import torch

    from affordance_grounding.inference.backends import (
        BackendOptions, OnnxRuntimeBackend, TorchBackend)

    backend_name, device, precision, graphs, _ = CASES[case]
    result = {'case': case, 'backend': backend_name, 'device': device, 'precision': precision,
              'cuda_graphs': graphs, 'frames': frames, 'batch': batch,
              'rss_start_mib': round(started_rss, 1)}
    cuda = device == 'cuda'
    if cuda:
        torch.cuda.init()
        free, total = torch.cuda.mem_get_info()
        used_before = total - free
    result['rss_after_imports_mib'] = round(current_rss_mib(), 1)
    options = BackendOptions(precision=precision, use_cuda_graphs=graphs)
    load_started = time.perf_counter()
    if backend_name == 'torch':
        backend = TorchBackend(model_path, device, options).load()
    else:
        backend = OnnxRuntimeBackend(model_path, device, options).load()
    result['load_seconds'] = round(time.perf_counter() - load_started, 2)
    result['rss_after_load_mib'] = round(current_rss_mib(), 1)
    result['peak_rss_after_load_mib'] = round(peak_rss_mib(), 1)
    size = backend.metadata.image_size
    images = np.random.default_rng(0).standard_normal((batch, 3, size, size), np.float32)
    run_started = time.perf_counter()
    for _ in range(frames):
        backend.infer(images)
    result['seconds_per_batch'] = round((time.perf_counter() - run_started) / max(frames, 1), 4)
    result['rss_end_mib'] = round(current_rss_mib(), 1)
    result['peak_rss_mib'] = round(peak_rss_mib(), 1)
    result['ru_maxrss_mib'] = round(maxrss_mib(), 1)
    if cuda:
        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info()
        result['gpu_used_delta_mib'] = round((total - free - used_before) / 2 ** 20, 1)
        result['gpu_max_allocated_mib'] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        result['gpu_max_reserved_mib'] = round(torch.cuda.max_memory_reserved() / 2 ** 20, 1)
        result['gpu'] = torch.cuda.get_device_name(0)
    return result


def list_cases(cuda: bool, onnxruntime_providers: Sequence[str]) -> Tuple[List[str], List[dict]]:
    """Return the cases this machine can run and the skipped ones with their reason."""
    runnable, skipped = [], []
    for case, (backend, device, _, _, _) in CASES.items():
        reason = None
        if device == 'cuda' and not cuda:
            reason = 'no CUDA device (torch.cuda.is_available() is False)'
        elif backend == 'onnxruntime':
            provider = 'CUDAExecutionProvider' if device == 'cuda' else 'CPUExecutionProvider'
            if provider not in onnxruntime_providers:
                reason = f'onnxruntime has no {provider}'
        if reason:
            skipped.append({'case': case, 'reason': reason})
        else:
            runnable.append(case)
    return runnable, skipped


def prepare_model_files(config_path: Optional[str], seed: int, cache_dir: str,
                        need_onnx: bool) -> Dict[str, str]:
    """Write (or reuse) the bundle and the ONNX file of the random model; returns their paths."""
    from affordance_grounding.config import load_model_config
    from affordance_grounding.model.checkpoint import save_bundle
    from bench.model_cache import build_model, ensure_onnx, weight_fingerprint

    config = load_model_config(config_path) if config_path else None
    grounder, _, _ = build_model(config, seed)
    bundle = Path(cache_dir) / f'grounder_seed{seed}_{weight_fingerprint(grounder)}.pt'
    if not bundle.is_file():
        save_bundle(str(bundle), grounder)
    paths = {'bundle': str(bundle)}
    if need_onnx:
        paths['onnx'] = str(ensure_onnx(grounder, cache_dir, seed)[0])
    return paths


def run_child(case: str, model_path: str, frames: int, batch: int, timeout: float = 900) -> dict:
    """Run :func:`measure_case` in a fresh interpreter and parse its result line."""
    command = [sys.executable, '-m', 'bench.memory', '--child', case, '--model', model_path,
               '--frames', str(frames), '--batch', str(batch)]
    environment = dict(os.environ, HF_HUB_OFFLINE='1')
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                               env=environment, cwd=str(Path(__file__).resolve().parents[1]))
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
    raise RuntimeError(f'{case} exited with {completed.returncode}: {" | ".join(tail)}')


def run(frames: int = 20, batch: int = 1, config_path: Optional[str] = None, seed: int = 0,
        cache_dir: str = DEFAULT_CACHE, only: Optional[Sequence[str]] = None) -> dict:
    """Measure every runnable case (or those in ``only``) in its own process."""
    import torch

    from affordance_grounding.inference.selection import probe_environment
    from bench.machine import describe_machine

    environment = probe_environment()
    cases, skipped = list_cases(environment.cuda_available, environment.onnxruntime_providers)
    if only:
        skipped = [skip for skip in skipped if skip['case'] in only]
        cases = [case for case in cases if case in only]
    need_onnx = any(CASES[case][4] == 'onnx' for case in cases)
    paths = prepare_model_files(config_path, seed, cache_dir, need_onnx) if cases else {}
    results = []
    for case in cases:
        print(f'{case}: loading and running {frames} batches of {batch} ...', flush=True)
        try:
            results.append(run_child(case, paths[CASES[case][4]], frames, batch))
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            skipped.append({'case': case, 'reason': f'failed: {error}'})
    return {'machine': describe_machine(measure_gemm=False),
            'model': 'config (random weights)' if config_path else 'full-size (random weights)',
            'model_files': {kind: {'path': path, 'mib': _file_mib(path)}
                            for kind, path in paths.items()},
            'frames': frames, 'batch': batch, 'results': results, 'skipped': skipped,
            'torch_cuda': torch.cuda.is_available(), 'load_average_end': load_average()}


def format_table(report: dict) -> str:
    """Return the results as a fixed-width table."""
    lines = [f"{report['model']}, {report['frames']} batches of {report['batch']}; model files "
             + ', '.join(f"{kind} {info['mib']} MiB" for kind, info in
                         report['model_files'].items()),
             f"{'case':24s} {'imports':>8s} {'loaded':>8s} {'peak RSS':>9s} {'GPU peak':>9s} "
             f"{'GPU used':>9s} {'s/batch':>8s}   (MiB)"]
    for row in report['results']:
        lines.append(f"{row['case']:24s} {row['rss_after_imports_mib']:8.0f} "
                     f"{row['rss_after_load_mib']:8.0f} {row['peak_rss_mib']:9.0f} "
                     f"{_mib(row.get('gpu_max_allocated_mib')):>9s} "
                     f"{_mib(row.get('gpu_used_delta_mib')):>9s} {row['seconds_per_batch']:8.3f}")
    for skip in report['skipped']:
        lines.append(f"skipped: {skip['case']}: {skip['reason']}")
    return '\n'.join(lines)


def _file_mib(path: str) -> float:
    return round(Path(path).stat().st_size / 2 ** 20, 1)


def _mib(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.0f}'


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark (or, with ``--child``, one case) and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=20, help='batches run after loading')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--config', help='model config YAML (default: full size, random)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cache-dir', default=DEFAULT_CACHE)
    parser.add_argument('--out', default='outputs/bench/memory.json')
    parser.add_argument('--cases', nargs='+', choices=sorted(CASES),
                        help='measure only these (default: all this machine can run)')
    parser.add_argument('--child', choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument('--model', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = measure_case(args.child, args.model, args.frames, args.batch)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    report = run(args.frames, args.batch, args.config, args.seed, args.cache_dir, args.cases)
    print(format_table(report))
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
