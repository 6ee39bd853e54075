"""Camera frames from another process: delivery and heatmap rate with and without the profile.

    .venv/bin/python -m bench.transport [--sizes 640x480,1280x720] [--seconds 12] [--rate 30]
        [--setups defaults,node_only,both_sides] [--config MODEL.yaml]
        [--out outputs/bench/transport.json]

A camera driver stand-in (bench.camera, its own process and DDS participant)
sends rgb8 frames best effort (``qos_profile_sensor_data``, as drivers do) at ``--rate`` Hz to
``affordance_node`` (its own process, default ``config/params.yaml`` QoS). Per setup the FastDDS
profile ``config/fastdds_large_images.xml`` is given to nobody (``defaults``), to the node only
(``node_only``, what node.launch.py does) or to both processes (``both_sides``). From the node's
/diagnostics: frames delivered = images received / frames sent, heatmap rate = frames published
/ seconds. The baseline is the rate the model allows, min(camera rate, 1 / pure inference),
with pure inference of the same ONNX file measured in this run, before and after the streams.
"""

import argparse
import contextlib
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Sequence
from unittest import mock

from affordance_grounding.ros.transport import PROFILE_ENV_VARS
from bench.camera import RESULT_PREFIX as CAMERA_RESULT
from bench.machine import describe_machine
from bench.memory import prepare_model_files
from bench.node import measure_pure_inference
from bench.timing import load_average, write_report
from harness.graph_client import (
    collect_stage_means, GraphClient, latest_diagnostics, wait_for_diagnostics)
from harness.node_process import NodeProcess
import numpy as np
import rclpy

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / 'config' / 'fastdds_large_images.xml'
SETUPS = ('defaults', 'node_only', 'both_sides')
TARGET_DELIVERED = 0.95
TARGET_RATE_RATIO = 0.90


def profile_environment(enabled: bool) -> Dict[str, Optional[str]]:
    """Environment changes that give a process the profile (or make sure it has none)."""
    return {name: str(PROFILE) if enabled else None for name in PROFILE_ENV_VARS}


@contextlib.contextmanager
def patched_environ(changes: Dict[str, Optional[str]]) -> Iterator[None]:
    """Set (or unset, for None) environment variables for child processes started inside."""
    with mock.patch.dict(os.environ):  # restores the whole environment on exit
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield


def run_camera(size: Sequence[int], rate_hz: float, seconds: float, profile: bool) -> dict:
    """Run bench.camera in its own process (own participant, own environment)."""
    command = [sys.executable, '-m', 'bench.camera', f'{size[0]}x{size[1]}', '--rate',
               str(rate_hz), '--seconds', str(seconds)]
    with patched_environ(profile_environment(profile)):
        completed = subprocess.run(command, capture_output=True, text=True, cwd=str(REPO),
                                   env=dict(os.environ), timeout=seconds + 90)
    for line in completed.stdout.splitlines():
        if line.startswith(CAMERA_RESULT):
            return json.loads(line[len(CAMERA_RESULT):])
    raise RuntimeError(f'camera process exited with {completed.returncode}: '
                       f'{completed.stderr.strip()[-500:]}')


def read_counters(client: GraphClient) -> Dict[str, int]:
    """Node counters from the next /diagnostics message (published after this call)."""
    count = len(client.messages('/diagnostics'))
    deadline = time.monotonic() + 10.0
    while len(client.messages('/diagnostics')) <= count:
        if time.monotonic() > deadline:
            raise TimeoutError('no /diagnostics from the node within 10 s')
        time.sleep(0.05)
    values = latest_diagnostics(client)
    return {key: int(values[name]) for key, name in (
        ('received', 'images received'), ('published', 'frames published'),
        ('lost', 'images lost in transport'),
        ('dropped', 'frames dropped (newer frame arrived)'))}


def measure_setup(setup: str, model_path: str, sizes: Sequence[Sequence[int]], rate_hz: float,
                  seconds: float, log_dir: Path, heatmap_resolution: str) -> List[dict]:
    """Start the node with (or without) the profile and stream every size at it."""
    with patched_environ(profile_environment(setup != 'defaults')):
        node = NodeProcess(log_dir / f'node_{setup}.log', {
            'model_path': model_path, 'backend': 'onnxruntime', 'device': 'cpu',
            'default_action': 'hold', 'max_rate_hz': 0.0, 'max_image_age_s': 0.0,
            'diagnostic_period': 0.5, 'heatmap_resolution': heatmap_resolution})
    client = GraphClient(name=f'transport_bench_{setup}', outputs=('/diagnostics',))
    rows = []
    try:
        wait_for_diagnostics(client, lambda v: v['state'] == 'active', timeout_s=300.0)
        for size in sizes:
            before = read_counters(client)
            client.clear()
            camera = run_camera(size, rate_hz, seconds, profile=setup == 'both_sides')
            time.sleep(1.0)  # the last frames' inference
            after = read_counters(client)
            delta = {key: after[key] - before[key] for key in after}
            stages = collect_stage_means(client, before['published'])
            rows.append({'setup': setup, 'size': f'{size[0]}x{size[1]}',
                         'sent': camera['sent'], **delta, 'stage_mean_ms': stages,
                         'node_frame_ms': sum(stages.values()),
                         'delivered': delta['received'] / camera['sent'],
                         'heatmap_hz': delta['published'] / camera['seconds'],
                         'load_average': load_average()})
            print(f"  {setup:10s} {size[0]}x{size[1]}: delivered {rows[-1]['delivered']:.1%}, "
                  f"heatmaps {rows[-1]['heatmap_hz']:.1f} Hz", flush=True)
    finally:
        client.close()
        node.stop()
    return rows


def run(sizes: Sequence[Sequence[int]], setups: Sequence[str], rate_hz: float, seconds: float,
        config_path: Optional[str], cache_dir: str, heatmap_resolution: str = 'input') -> dict:
    """Measure every setup and size; returns the JSON-ready report."""
    files = prepare_model_files(config_path, 0, cache_dir, need_onnx=True)
    model_path = str(Path(files['onnx']).resolve())
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    inference_ms = [measure_pure_inference('onnxruntime', model_path, frame, 30) * 1e3]
    load_before = load_average()
    rows = []
    rclpy.init()
    try:
        with tempfile.TemporaryDirectory() as log_dir:
            for setup in setups:
                rows += measure_setup(setup, model_path, sizes, rate_hz, seconds, Path(log_dir),
                                      heatmap_resolution)
    finally:
        rclpy.try_shutdown()
    inference_ms.append(measure_pure_inference('onnxruntime', model_path, frame, 30) * 1e3)
    model_hz = 1e3 / float(np.mean(inference_ms))
    allowed_hz = min(rate_hz, model_hz)
    for row in rows:
        row['rate_vs_allowed'] = row['heatmap_hz'] / allowed_hz
        row['meets_target'] = (row['delivered'] >= TARGET_DELIVERED
                               and row['rate_vs_allowed'] >= TARGET_RATE_RATIO)
    return {'machine': describe_machine(), 'load_average_before': load_before,
            'load_average_after': load_average(), 'rows': rows, 'seconds': seconds,
            'rate_hz': rate_hz, 'pure_inference_ms': inference_ms, 'model_hz': model_hz,
            'allowed_hz': allowed_hz, 'model': config_path or 'full-size, random weights',
            'profile': str(PROFILE.relative_to(REPO)), 'heatmap_resolution': heatmap_resolution,
            'target': f'both_sides: delivered >= {TARGET_DELIVERED:.0%}, heatmap rate >= '
                      f'{TARGET_RATE_RATIO:.0%} of min(camera rate, model rate)'}


def format_table(report: dict) -> str:
    """Return the report as a fixed-width table."""
    inference = ' / '.join(f'{ms:.1f}' for ms in report['pure_inference_ms'])
    lines = [f"{report['model']}, heatmap_resolution {report['heatmap_resolution']}; rgb8 best "
             f"effort at {report['rate_hz']:.0f} Hz for "
             f"{report['seconds']:.0f} s per row; pure inference {inference} ms (before / after)"
             f" -> model {report['model_hz']:.0f} Hz, allowed {report['allowed_hz']:.1f} Hz; "
             f"load {report['load_average_before']} -> {report['load_average_after']}",
             f"{'setup':11s} {'size':>9s} {'sent':>5s} {'received':>8s} {'lost':>5s} "
             f"{'delivered':>9s} {'heatmap Hz':>10s} {'vs allowed':>10s} {'target':>6s} "
             f"{'node ms':>7s}  stages (ms)"]
    for row in report['rows']:
        lines.append(f"{row['setup']:11s} {row['size']:>9s} {row['sent']:5d} "
                     f"{row['received']:8d} {row['lost']:5d} {row['delivered']:9.1%} "
                     f"{row['heatmap_hz']:10.1f} {row['rate_vs_allowed']:10.1%} "
                     f"{'yes' if row['meets_target'] else 'no':>6s} "
                     f"{row['node_frame_ms']:7.1f}  "
                     + ', '.join(f'{key} {value:.1f}'
                                 for key, value in row['stage_mean_ms'].items()))
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments, run, print the table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='640x480,1280x720')
    parser.add_argument('--setups', default=','.join(SETUPS))
    parser.add_argument('--seconds', type=float, default=12.0)
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--config', default='config/model_synthetic.yaml',
                        help='model config YAML (random weights where its files are missing)')
    parser.add_argument('--heatmap-resolution', default='input', choices=('input', 'model'),
                        help='node parameter (model: 224x224 outputs, less work per frame)')
    parser.add_argument('--cache-dir', default='outputs/bench/cache')
    parser.add_argument('--out', default='outputs/bench/transport.json')
    args = parser.parse_args(argv)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    sizes = [[int(side) for side in size.split('x')] for size in args.sizes.split(',')]
    setups = args.setups.split(',')
    unknown = sorted(set(setups) - set(SETUPS))
    if unknown:
        parser.error(f'unknown setups {unknown}; choose from {list(SETUPS)}')
    report = run(sizes, setups, args.rate, args.seconds, args.config, args.cache_dir,
                 args.heatmap_resolution)
    print(format_table(report))
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
