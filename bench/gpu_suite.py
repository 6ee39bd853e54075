"""The GPU checks of the performance issue in one command, for a borrowed CUDA machine.

    python3 -m bench.gpu_suite --out DIR [--repeats 10] [--budget-s 480]

Runs, each in its own process with a time limit, and writes every result under ``DIR``:

1. ``bench.inference``: the CUDA rows (PyTorch fp32/fp16, with and without CUDA graphs, at
   batch 1, 8 and 64; ONNX Runtime CUDA and TensorRT fp16 where installed; the reference
   structure on the GPU) and the CPU rows at batch 1 (PyTorch, ONNX Runtime fp32 and int8 on
   the device machine's CPU); fp32, fp16 and int8 heatmap parity vs PyTorch fp32 on the CPU
   -> ``inference.json``;
2. ``bench.memory`` for the CUDA backends (peak RSS, peak GPU memory) -> ``memory.json``;
3. ``pytest -m gpu`` on the GPU tests -> ``pytest.log``;
4. ``bench.multicam --pipeline-only`` on CUDA: the node's multi-camera batch (preprocess each
   frame, one inference, postprocess each) at batch 1, 2 and 3 vs separate single-frame runs
   -> ``multicam.json``;

then ``suite.json``: each step's exit status and duration, the machine, and the issues' GPU
targets (<= 3 ms/frame at batch 1 and >= 2000 frames/s at batch 64 for PyTorch CUDA fp16 +
CUDA graphs) and parity rows (fp16 and int8 heatmaps within the exporter's per-map cosine
bounds, int8 vs fp32 ONNX Runtime speed) next to the measured values.

Without CUDA it writes ``suite.json`` with status ``no-cuda``, says so on stderr and exits 2:
nothing is measured. On the device machine start it through ``bench/gpu_check.sh``, which first
installs the carried wheels the machine lacks (open_clip, ftfy; see docs/benchmarks.md).
"""

import argparse
from dataclasses import dataclass
import json
import os
from pathlib import Path
import platform
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
NO_CUDA_EXIT = 2


@dataclass(frozen=True)
class Step:
    """One command of the suite.

    Attributes:
        name: Short name (also the log file's stem).
        command: Argument vector.
        timeout_s: Wall-clock limit.
        output: The JSON file the step writes, if any.
    """

    name: str
    command: List[str]
    timeout_s: float
    output: Optional[str] = None


def build_steps(out_dir: Path, python: str = sys.executable, repeats: int = 10,
                budget_s: float = 480) -> List[Step]:
    """Return the suite's commands; their time limits split ``budget_s`` (inference: 60%)."""
    inference = str(out_dir / 'inference.json')
    memory = str(out_dir / 'memory.json')
    return [
        Step('inference', [python, '-m', 'bench.inference', '--batches', '1', '--repeats',
                           str(repeats), '--cuda-batches', '1', '8', '64', '--out', inference],
             0.6 * budget_s, inference),
        Step('memory', [python, '-m', 'bench.memory', '--frames', '20', '--cases',
                        'torch-cuda-fp32', 'torch-cuda-fp16-graphs', 'onnxruntime-cuda',
                        '--out', memory], 0.2 * budget_s, memory),
        Step('pytest', [python, '-m', 'pytest', '-m', 'gpu', '-q', '-rA',
                        'test/inference/test_gpu_backends.py'], 0.1 * budget_s),
    ] + multicam_steps(out_dir, python, budget_s)


def multicam_steps(out_dir: Path, python: str, budget_s: float) -> List[Step]:
    """Return the multi-camera batch step (batch 1, 2, 3; full size; PyTorch CUDA as a node)."""
    multicam = str(out_dir / 'multicam.json')
    return [Step('multicam', [python, '-m', 'bench.multicam', '--pipeline-only', '--backend',
                              'torch', '--device', 'cuda', '--config', '', '--size', '640x480',
                              '--batches', '1,2,3', '--out', multicam], 0.1 * budget_s,
                 multicam)]


def run_step(step: Step, out_dir: Path) -> Dict:
    """Run one step, log its output to ``out_dir/<name>.log``; returns status and duration."""
    started = time.perf_counter()
    log_path = out_dir / f'{step.name}.log'
    print(f'== {step.name}: {" ".join(step.command)} (limit {step.timeout_s:.0f} s)', flush=True)
    environment = dict(os.environ, PYTHONUNBUFFERED='1', HF_HUB_OFFLINE='1')
    with open(log_path, 'w') as log:
        try:
            completed = subprocess.run(step.command, cwd=str(REPO), env=environment,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       timeout=step.timeout_s)
            status = 'ok' if completed.returncode == 0 else f'exit {completed.returncode}'
        except subprocess.TimeoutExpired:
            status = f'timed out after {step.timeout_s:.0f} s'
    seconds = round(time.perf_counter() - started, 1)
    tail = log_path.read_text(errors='replace').splitlines()[-40:]
    print('\n'.join(tail), flush=True)
    print(f'== {step.name}: {status} in {seconds} s', flush=True)
    return {'step': step.name, 'status': status, 'seconds': seconds, 'log': str(log_path),
            'output': step.output}


SUITE_TARGET_WORDS = ('cuda', 'tensorrt', 'int8')


def collect_targets(inference_json: Optional[str]) -> List[Dict]:
    """Return the GPU, fp16 and int8 targets ``bench.inference`` evaluated.

    A failed entry stands in when it wrote no file or no PyTorch CUDA fp16 + graphs row.
    """
    if not inference_json or not Path(inference_json).is_file():
        return [{'target': 'GPU inference benchmark', 'required': 'inference.json written',
                 'measured': None, 'holds': False}]
    report = json.loads(Path(inference_json).read_text())
    targets = [target for target in report.get('targets', [])
               if any(word in target['target'] for word in SUITE_TARGET_WORDS)]
    if not any('torch cuda fp16 + graphs' in target['target'] for target in targets):
        targets.append({'target': 'torch cuda fp16 + graphs rows',
                        'required': 'present in inference.json', 'measured': None,
                        'holds': False})
    return targets


def describe_gpu() -> Dict:
    """GPU, driver and library versions (nvidia-smi and torch), without measuring anything."""
    import torch

    info = {'python': platform.python_version(), 'torch': torch.__version__,
            'cuda_available': torch.cuda.is_available()}
    if torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name(0)
        info['capability'] = '.'.join(map(str, torch.cuda.get_device_capability(0)))
        info['cuda'] = torch.version.cuda
    try:
        info['nvidia_smi'] = subprocess.run(
            ['nvidia-smi', '--query-gpu=name,driver_version,memory.total,clocks.max.sm',
             '--format=csv,noheader'], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        info['nvidia_smi'] = f'unavailable ({type(error).__name__})'
    return info


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the suite; exit 0 when every step ran (met targets or not), 1 if not, 2 without CUDA."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=os.environ.get('OUT') or 'outputs/gpu_suite',
                        help='folder for the JSON files and logs (default $OUT)')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--budget-s', type=float, default=480,
                        help='total time the steps may take (split between them)')
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    machine = describe_gpu()
    summary: Dict = {'machine': machine, 'steps': [], 'targets': []}
    if not machine['cuda_available']:
        print('ERROR: bench.gpu_suite needs a CUDA device and torch sees none '
              '(torch.cuda.is_available() is False); nothing was measured.', file=sys.stderr)
        summary['status'] = 'no-cuda'
        (out_dir / 'suite.json').write_text(json.dumps(summary, indent=2))
        return NO_CUDA_EXIT
    for step in build_steps(out_dir, sys.executable, args.repeats, args.budget_s):
        summary['steps'].append(run_step(step, out_dir))
    summary['targets'] = collect_targets(str(out_dir / 'inference.json'))
    summary['seconds'] = round(time.perf_counter() - started, 1)
    failed = [step['step'] for step in summary['steps'] if step['status'] != 'ok']
    if any(target['measured'] is None for target in summary['targets']):
        failed.append('inference (no torch cuda fp16 + graphs rows)')
    summary['status'] = 'ok' if not failed else f'failed steps: {", ".join(failed)}'
    summary['targets_met'] = all(target['holds'] for target in summary['targets'])
    (out_dir / 'suite.json').write_text(json.dumps(summary, indent=2))
    print(f"suite: {summary['status']} in {summary['seconds']} s")
    for target in summary['targets']:
        verdict = {True: 'holds', False: 'NOT MET', None: 'n/a'}[target['holds']]
        print(f"target {target['target']}: {target['required']}, measured "
              f"{target['measured']} -> {verdict}")
    return 0 if not failed else 1


if __name__ == '__main__':
    sys.exit(main())
