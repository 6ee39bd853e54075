"""Where an ONNX graph's time goes in ONNX Runtime on the CPU: kernel time per operator type.

    .venv/bin/python -m bench.ort_profile MODEL.onnx [MODEL2.onnx ...] [--frames 4]
        [--threads 1] [--no-spinning] [--out outputs/bench/ort_profile.json]

Runs each file through ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) at
batch 1 and sums the kernel durations per operator type (the first, warm-up frame is dropped).
It shows what int8 leaves in fp32 and how much of a frame that is (the limit on its speed-up).
"""

import argparse
from collections import defaultdict
import json
import os
from pathlib import Path
import sys
import tempfile
from typing import Dict, List, Optional

from bench.timing import load_average, write_report
import numpy as np


def profile_file(path: str, frames: int = 4, threads: Optional[int] = None,
                 spinning: bool = True) -> Dict:
    """Return {'total_ms_per_frame', 'by_op': {op: ms per frame}} for one ONNX file.

    ``spinning=False`` is the node's setting: idle pool threads sleep instead of spinning.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or 0
    if not spinning:
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = os.path.join(folder, 'profile')
        session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        for _ in range(frames + 1):
            session.run(None, {'image': image})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [event for event in events if event.get('name') == 'model_run']
    first_end = runs[0]['ts'] + runs[0]['dur'] if runs else 0
    by_op: Dict[str, float] = defaultdict(float)
    for event in events:
        if event.get('cat') == 'Node' and event['name'].endswith('_kernel_time') \
                and event['ts'] >= first_end:
            by_op[event['args'].get('op_name', '?')] += event['dur'] / 1e3 / frames
    total = sum(by_op.values())
    ordered = dict(sorted(by_op.items(), key=lambda item: -item[1]))
    return {'total_kernel_ms_per_frame': round(total, 2),
            'by_op_ms': {op: round(ms, 2) for op, ms in ordered.items()},
            'by_op_share': {op: round(ms / total, 4) for op, ms in ordered.items()}}


def main(argv: Optional[List[str]] = None) -> int:
    """Profile every file, print the biggest operator types, write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('models', nargs='+')
    parser.add_argument('--frames', type=int, default=4)
    parser.add_argument('--threads', type=int)
    parser.add_argument('--no-spinning', action='store_true',
                        help="idle pool threads sleep (the node's setting)")
    parser.add_argument('--out', default='outputs/bench/ort_profile.json')
    args = parser.parse_args(argv)
    start = load_average()
    report = {'threads': args.threads, 'frames': args.frames, 'spinning': not args.no_spinning,
              'load_average_start': start,
              'models': {path: profile_file(path, args.frames, args.threads, not args.no_spinning)
                         for path in args.models}}
    report['load_average_end'] = load_average()
    for path, profile in report['models'].items():
        top = ', '.join(f'{op} {share:.0%}' for op, share in
                        list(profile['by_op_share'].items())[:8])
        print(f"{path}: {profile['total_kernel_ms_per_frame']} ms of kernels a frame; {top}")
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
