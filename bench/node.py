"""The node end to end: stamp -> heatmap latency, output rate at 30 Hz, time per stage, memory.

    .venv/bin/python -m bench.node [--backends onnxruntime,torch] [--seconds 30] [--rate 30]
        [--size 640x480] [--config MODEL.yaml] [--out outputs/bench/node.json]

Per backend, in this order and never overlapping: (1) pure inference of the same model file
through the same backend class in this process (the baseline), (2) ``affordance_node`` in its
own process fed a ``--rate`` Hz camera stream over DDS for ``--seconds``. From the node's
/diagnostics it reports the frame-weighted mean of each stage (conversion, preprocessing,
inference, postprocessing, publishing) and from the client the delay from the image stamp to
the heatmap's arrival and the sustained output rate. The overhead the node adds is its whole
per-frame time minus the baseline inference time, over the baseline.
The model is the full-size architecture with random weights unless ``--config``.
"""

import argparse
import os
from pathlib import Path
import tempfile
import time
from typing import List, Optional, Sequence

from affordance_grounding.inference.backends import BackendOptions
from affordance_grounding.inference.selection import create_backend
from affordance_grounding.perception.preprocess import ImagePreprocessor
from bench.machine import describe_machine
from bench.memory import prepare_model_files
from bench.timing import load_average, median_seconds, write_report
from harness.graph_client import (
    collect_stage_means, GraphClient, wait_for_diagnostics)
from harness.node_process import NodeProcess
import numpy as np
import rclpy

MODEL_KIND = {'onnxruntime': 'onnx', 'torch': 'bundle'}


def measure_pure_inference(backend_name: str, model_path: str, frame: np.ndarray,
                           repeats: int) -> float:
    """Median seconds of ``backend.infer`` on one preprocessed frame (the node's settings)."""
    options = BackendOptions(cpu_spin_wait=False)  # as the node runs it
    backend = create_backend(backend_name, model_path, 'cpu', options).load()
    metadata = backend.metadata
    batch = ImagePreprocessor(metadata.image_size, metadata.mean, metadata.std)(frame)
    seconds = median_seconds(lambda: backend.infer(batch), repeats, warmup=2)
    backend.close()
    return seconds


def stream_to_node(client: GraphClient, frame: np.ndarray, rate_hz: float,
                   seconds: float) -> int:
    """Publish ``frame`` at ``rate_hz`` for ``seconds``; return how many were sent."""
    start, sent = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        client.publish_image(frame)
        sent += 1
        time.sleep(max(0.0, start + sent / rate_hz - time.monotonic()))
    return sent


def measure_node(backend_name: str, model_path: str, frame: np.ndarray, rate_hz: float,
                 seconds: float, log_dir: Path, image_qos: str) -> dict:
    """Run the node under a camera stream; return its latency, rate, stages and memory."""
    node = NodeProcess(log_dir / f'node_{backend_name}.log', {
        'model_path': model_path, 'backend': backend_name, 'device': 'cpu',
        'default_action': 'hold', 'max_rate_hz': 0.0, 'max_image_age_s': 0.0,
        'diagnostic_period': 1.0, 'image_qos': image_qos})
    client = GraphClient(name=f'bench_client_{backend_name}',
                         outputs=('heatmap', '/diagnostics'))
    try:
        client.wait_for_node(timeout_s=300.0)
        wait_for_diagnostics(client, lambda v: v['state'] == 'active', timeout_s=300.0)
        stream_to_node(client, frame, rate_hz, 3.0)  # warm-up, not measured
        time.sleep(2.0)
        client.clear()
        sent = stream_to_node(client, frame, rate_hz, seconds)
        values = wait_for_diagnostics(client, lambda v: True, timeout_s=30.0)
        time.sleep(2.5)  # two diagnostic periods: the last frames' statistics arrive
        stages = collect_stage_means(client)
        heatmaps = client.messages('heatmap')
        arrivals = client.arrival_s['heatmap'][:len(heatmaps)]
        peak_rss = node.peak_rss_mib()
    finally:
        client.close()
        node.stop()
    delays_ms = np.array([(arrival - msg.header.stamp.sec - msg.header.stamp.nanosec * 1e-9)
                          * 1e3 for msg, arrival in zip(heatmaps, arrivals)])
    return {'sent': sent, 'outputs': len(heatmaps), 'output_hz': len(heatmaps) / seconds,
            'stamp_to_heatmap_ms': {'median': float(np.median(delays_ms)),
                                    'p90': float(np.percentile(delays_ms, 90))},
            'stage_mean_ms': stages, 'node_peak_rss_mib': peak_rss,
            'frames_dropped_newer_frame': int(values['frames dropped (newer frame arrived)']),
            'images_lost_in_transport': int(values['images lost in transport'])}


def run(backends: Sequence[str], seconds: float, rate_hz: float, size: Sequence[int],
        config_path: Optional[str], repeats: int, cache_dir: str,
        image_qos: str = 'reliable') -> dict:
    """Measure every backend; returns the JSON-ready report."""
    files = prepare_model_files(config_path, 0, cache_dir, need_onnx='onnxruntime' in backends)
    width, height = size
    frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    rows = []
    rclpy.init()
    try:
        with tempfile.TemporaryDirectory() as log_dir:
            for name in backends:
                model_path = str(Path(files[MODEL_KIND[name]]).resolve())
                pure_ms = measure_pure_inference(name, model_path, frame, repeats) * 1e3
                node = measure_node(name, model_path, frame, rate_hz, seconds, Path(log_dir),
                                    image_qos)
                node_ms = sum(node['stage_mean_ms'].values())
                rows.append(dict(node, backend=name, pure_inference_ms=pure_ms,
                                 node_frame_ms=node_ms,
                                 overhead_vs_pure=(node_ms - pure_ms) / pure_ms))
    finally:
        rclpy.try_shutdown()
    return {'machine': describe_machine(), 'load_average': load_average(), 'rows': rows,
            'seconds': seconds, 'rate_hz': rate_hz, 'frame_size': [width, height],
            'image_qos': image_qos,
            'model': config_path or 'full-size architecture, random weights',
            'target': 'node adds <= 10% on top of pure inference'}


def format_table(report: dict) -> str:
    """Return the report as a fixed-width table."""
    lines = [f"{report['model']}; {report['rate_hz']:.0f} Hz input of "
             f"{report['frame_size'][0]}x{report['frame_size'][1]} ({report['image_qos']}) for "
             f"{report['seconds']:.0f} s"
             f"; load {report['load_average']}",
             f"{'backend':12s} {'pure ms':>8s} {'node ms':>8s} {'overhead':>9s} {'out Hz':>7s} "
             f"{'delay med':>9s} {'p90':>7s} {'RSS MiB':>8s}  stages (ms)"]
    for row in report['rows']:
        stages = ', '.join(f'{key} {value:.1f}' for key, value in row['stage_mean_ms'].items())
        lines.append(f"{row['backend']:12s} {row['pure_inference_ms']:8.1f} "
                     f"{row['node_frame_ms']:8.1f} {row['overhead_vs_pure']:9.1%} "
                     f"{row['output_hz']:7.2f} {row['stamp_to_heatmap_ms']['median']:9.1f} "
                     f"{row['stamp_to_heatmap_ms']['p90']:7.1f} {row['node_peak_rss_mib']:8.0f}"
                     f'  {stages}')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments, run, print the table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--backends', default='onnxruntime,torch')
    parser.add_argument('--seconds', type=float, default=30.0)
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--size', default='640x480', help='camera frame WIDTHxHEIGHT')
    parser.add_argument('--config', help='model config YAML (default: full size, random)')
    parser.add_argument('--image-qos', default='reliable',
                        choices=('reliable', 'sensor_data', 'system_default'),
                        help='node image_qos; best effort loses most 640x480 frames between '
                             'processes with default FastDDS settings (bench.transport, README)')
    parser.add_argument('--repeats', type=int, default=10, help='pure-inference repeats')
    parser.add_argument('--cache-dir', default='outputs/bench/cache')
    parser.add_argument('--out', default='outputs/bench/node.json')
    args = parser.parse_args(argv)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    report = run(args.backends.split(','), args.seconds, args.rate,
                 [int(side) for side in args.size.split('x')], args.config, args.repeats,
                 args.cache_dir, args.image_qos)
    print(format_table(report))
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
