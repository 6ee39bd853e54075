"""The node's multi-camera batch without ROS: one ``run_batch`` of N frames vs N runs.

``bench.multicam --pipeline-only`` runs it (any backend and device); kept apart from the DDS
measurement so that each file stays small.
"""

from typing import Optional, Sequence

from affordance_grounding.inference.backends import BackendOptions
from affordance_grounding.inference.selection import create_backend
from affordance_grounding.perception.frame_pipeline import FramePipeline
from affordance_grounding.perception.settings import OutputSettings
from bench.machine import describe_machine
from bench.memory import prepare_model_files
from bench.timing import load_average, median_seconds
import numpy as np


def measure_pipeline_batches(backend_name: str, device: str, batches: Sequence[int],
                             size: Sequence[int], config_path: Optional[str], cache_dir: str,
                             repeats: int) -> dict:
    """Median ms of one ``run_batch`` of N frames vs N ``run`` calls, per N; JSON-ready."""
    files = prepare_model_files(config_path, 0, cache_dir, need_onnx=backend_name != 'torch')
    model_path = files['bundle' if backend_name == 'torch' else 'onnx']
    backend = create_backend(backend_name, model_path, device,
                             BackendOptions(cpu_spin_wait=False)).load()
    pipeline = FramePipeline(backend)
    width, height = size
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
              for _ in range(max(batches))]
    settings = OutputSettings()
    rows = []
    load_before = load_average()
    for count in batches:
        frames, indices = images[:count], list(range(count))  # a different action per row
        batch_s = median_seconds(lambda: pipeline.run_batch(frames, indices, settings),
                                 repeats, warmup=2)
        separate_s = median_seconds(
            lambda: [pipeline.run(frame, index, settings)
                     for frame, index in zip(frames, indices)], repeats, warmup=2)
        stages = pipeline.run_batch(frames, indices, settings)[0].timings_s
        rows.append({'batch': count, 'batch_ms': batch_s * 1e3,
                     'separate_runs_ms': separate_s * 1e3,
                     'batch_ms_per_frame': batch_s * 1e3 / count,
                     'speedup_vs_separate_runs': separate_s / batch_s,
                     'inference_ms_in_batch': stages['inference'] * 1e3})
    description = backend.describe()
    backend.close()
    return {'machine': describe_machine(), 'backend': description, 'frame_size': list(size),
            'model': config_path or 'full-size architecture, random weights',
            'load_average_before': load_before, 'load_average_after': load_average(),
            'repeats': repeats, 'rows': rows}


def format_pipeline_table(report: dict) -> str:
    """Return the pipeline-only report as a fixed-width table."""
    width, height = report['frame_size']
    lines = [f"FramePipeline.run_batch, {report['backend']}, {report['model']}, {width}x"
             f"{height}; load {report['load_average_before']} -> "
             f"{report['load_average_after']}",
             f"{'batch':>5s} {'batch ms':>9s} {'ms/frame':>9s} {'N runs ms':>10s} "
             f"{'speed-up':>8s} {'infer ms':>9s}"]
    for row in report['rows']:
        lines.append(f"{row['batch']:5d} {row['batch_ms']:9.1f} "
                     f"{row['batch_ms_per_frame']:9.1f} {row['separate_runs_ms']:10.1f} "
                     f"{row['speedup_vs_separate_runs']:7.2f}x "
                     f"{row['inference_ms_in_batch']:9.1f}")
    return '\n'.join(lines)
