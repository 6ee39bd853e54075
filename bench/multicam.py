"""Several cameras: one node batching them vs one node per camera (throughput, delay, memory).

    .venv/bin/python -m bench.multicam [--cameras 1,2,3] [--rate 15] [--seconds 12]
        [--size 320x240] [--config config/model_synthetic.yaml] [--no-profile]
        [--out outputs/bench/multicam.json]

For N cameras, N camera stand-ins (bench.camera, each its own process and DDS participant)
send rgb8 frames best effort at ``--rate`` Hz each, either to ONE ``affordance_node`` with
``cameras: [cam0, ..]`` (inputs ``/affordance/camK/image``, one batched inference of every
camera's newest frame), or to N separate nodes (``/affordanceK/image``, one model each), the
way users run one node per camera today. Both use the same ONNX file (ONNX Runtime CPU) and
run in this one invocation, one configuration after another, so they share the machine's
load. A client in this process records every heatmap: total heatmaps/s, delay from the image
stamp to the heatmap's arrival (p50, p90); from /proc: peak RSS (VmHWM) of the node
process(es), summed, their CPU time per heatmap and, for one node, the mean number of
frames per inference (its /diagnostics). The FastDDS profile
``config/fastdds_large_images.xml`` is given to cameras and nodes alike (``--no-profile``: to
nobody). Targets: RSS of one node with 3 cameras <= 1.3x one camera; one node's total
throughput >= that of the separate nodes.

Saturated A/B of the worker's overlap (issue 20), variants interleaved and repeated:

    .venv/bin/python -m bench.multicam --cameras 2 --rate 30 --rounds 3 \
        --modes one_node,one_node_sequential,separate_nodes,separate_nodes_sequential

``*_sequential`` runs the node(s) with ``worker_overlap: false`` (one worker thread, as
before the overlap); the others with ``worker_overlap: true`` (two threads, the default).
Each round runs every mode once, the order rotating from round to round; the verdict
compares medians over the rounds.

    .venv/bin/python -m bench.multicam --pipeline-only [--backend torch --device cuda]
        [--batches 1,2,3] [--config ''] [--out outputs/bench/multicam_pipeline.json]

measures, without ROS, what the node's worker does per batch of N cameras
(``FramePipeline.run_batch``: preprocess each, infer once, postprocess each) against N
single-frame runs, on any backend and device; ``--config ''`` is the full-size architecture
(random weights). bench.gpu_suite runs it on CUDA at batch 1, 2 and 3.
"""

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

from affordance_grounding.ros import qos
from affordance_grounding.ros.health import NO_FRAMES
from bench.camera import RESULT_PREFIX as CAMERA_RESULT
from bench.machine import describe_machine
from bench.memory import prepare_model_files
from bench.multicam_pipeline import (  # noqa: F401 - re-exported: --pipeline-only
    format_pipeline_table, measure_pipeline_batches)
from bench.timing import load_average, write_report
from bench.transport import patched_environ, profile_environment
from diagnostic_msgs.msg import DiagnosticArray
from harness.node_process import NodeProcess
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

REPO = Path(__file__).resolve().parents[1]
TARGET_RSS_RATIO = 1.3
THROUGHPUT_TOLERANCE = 1e-3
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


class HeatmapRecorder:
    """Subscribes to heatmap topics in this process; keeps (topic, stamp, arrival) per message."""

    def __init__(self, topics: Sequence[str]):
        """Subscribe to ``topics`` (absolute names) and spin in a thread."""
        self._node = rclpy.create_node('multicam_bench_recorder')
        self._lock = threading.Lock()
        self.records: List[tuple] = []
        self.batch_means: List[float] = []  # the nodes' 'frames per inference mean' readings
        for topic in topics:
            self._node.create_subscription(Image, topic, self._recorder(topic), qos.RELIABLE)
        self._node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                       10)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _recorder(self, topic: str):
        def record(msg: Image) -> None:
            arrival = time.time()
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            with self._lock:
                self.records.append((topic, stamp, arrival))
        return record

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            for item in status.values:
                if item.key == 'frames per inference mean' and item.value != NO_FRAMES:
                    with self._lock:
                        self.batch_means.append(float(item.value))

    def wait_for_publishers(self, topics: Sequence[str], timeout_s: float = 60.0) -> None:
        """Wait until every heatmap topic has its publisher matched."""
        deadline = time.monotonic() + timeout_s
        while not all(self._node.count_publishers(topic) > 0 for topic in topics):
            if time.monotonic() > deadline:
                raise TimeoutError(f'heatmap publishers not found within {timeout_s} s')
            time.sleep(0.05)

    def take(self) -> List[tuple]:
        """Return and forget what was recorded."""
        with self._lock:
            records, self.records = self.records, []
            self.batch_means = []
        return records

    def close(self) -> None:
        """Stop spinning and destroy the node."""
        self._executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        self._node.destroy_node()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def start_camera(topic: str, size: Sequence[int], rate_hz: float,
                 seconds: float) -> subprocess.Popen:
    """Start one bench.camera process streaming to ``topic`` (it waits for a subscriber)."""
    command = [sys.executable, '-m', 'bench.camera', f'{size[0]}x{size[1]}', '--rate',
               str(rate_hz), '--seconds', str(seconds), '--topic', topic]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(REPO), env=dict(os.environ))


def camera_result(process: subprocess.Popen, timeout_s: float) -> dict:
    """Wait for a camera process and parse its result line."""
    stdout, stderr = process.communicate(timeout=timeout_s)
    for line in stdout.splitlines():
        if line.startswith(CAMERA_RESULT):
            return json.loads(line[len(CAMERA_RESULT):])
    raise RuntimeError(f'camera exited with {process.returncode}: {stderr.strip()[-500:]}')


MODES = ('one_node', 'one_node_sequential', 'separate_nodes', 'separate_nodes_sequential')


def layout(cameras: int, mode: str) -> List[dict]:
    """Nodes of one configuration: namespace, parameters, image and heatmap topics."""
    if mode.startswith('one_node'):
        names = [f'cam{index}' for index in range(cameras)]
        return [{'namespace': '/affordance', 'cameras': names,
                 'images': [f'/affordance/{name}/image' for name in names],
                 'heatmaps': [f'/affordance/{name}/heatmap' for name in names]}]
    return [{'namespace': f'/affordance{index}', 'cameras': [],
             'images': [f'/affordance{index}/image'],
             'heatmaps': [f'/affordance{index}/heatmap']} for index in range(cameras)]


def measure(cameras: int, mode: str, model_path: str, size: Sequence[int], rate_hz: float,
            seconds: float, log_dir: Path, profile: bool) -> dict:
    """Run one configuration (nodes, cameras, recorder) and return its row."""
    nodes_layout = layout(cameras, mode)
    load_before = load_average()
    with patched_environ(profile_environment(profile)):
        nodes = []
        for index, spec in enumerate(nodes_layout):
            parameters = {'model_path': model_path, 'backend': 'onnxruntime', 'device': 'cpu',
                          'default_action': 'hold', 'max_rate_hz': 0.0,
                          'max_image_age_s': 0.0, 'diagnostic_period': 1.0,
                          'worker_overlap': not mode.endswith('_sequential')}
            if spec['cameras']:
                parameters['cameras'] = spec['cameras']
            nodes.append(NodeProcess(log_dir / f'{mode}{cameras}_{index}.log', parameters,
                                     namespace=spec['namespace']))
        heatmap_topics = [topic for spec in nodes_layout for topic in spec['heatmaps']]
        recorder = HeatmapRecorder(heatmap_topics)
        try:
            for node, spec in zip(nodes, nodes_layout):
                node.wait_for_log(f"out {spec['namespace']}/active_action [String]",
                                  timeout_s=300.0)
            recorder.wait_for_publishers(heatmap_topics)
            idle_rss = sum(node.rss_mib() for node in nodes)
            cpu_before = sum(cpu_seconds(node.process.pid) for node in nodes)
            streams = [start_camera(topic, size, rate_hz, seconds)
                       for spec in nodes_layout for topic in spec['images']]
            results = [camera_result(stream, seconds + 120) for stream in streams]
            time.sleep(1.0)  # the last frames' inference
            batch_means = list(recorder.batch_means)
            cpu_s = sum(cpu_seconds(node.process.pid) for node in nodes) - cpu_before
            peak_rss = sum(node.peak_rss_mib() for node in nodes)
            records = recorder.take()
        finally:
            recorder.close()
            for node in nodes:
                node.stop()
    stream_s = float(np.mean([result['seconds'] for result in results]))
    delays_ms = np.array([(arrival - stamp) * 1e3 for _, stamp, arrival in records])
    per_camera_hz = [sum(1 for record in records if record[0] == topic) / stream_s
                     for topic in heatmap_topics]
    return {'cameras': cameras, 'mode': mode, 'nodes': len(nodes),
            'sent': sum(result['sent'] for result in results), 'heatmaps': len(records),
            'stream_s': stream_s, 'heatmaps_per_s': len(records) / stream_s,
            'per_camera_hz': per_camera_hz,
            'delay_ms': {'p50': float(np.percentile(delays_ms, 50)) if len(records) else None,
                         'p90': float(np.percentile(delays_ms, 90)) if len(records) else None},
            'peak_rss_mib': peak_rss, 'idle_rss_mib': idle_rss,
            'cpu_ms_per_heatmap': cpu_s * 1e3 / max(1, len(records)),
            'cpu_cores_used': cpu_s / stream_s,
            'frames_per_inference_mean': (float(np.mean(batch_means)) if batch_means
                                          else None),
            'load_average_before': load_before}


def run(camera_counts: Sequence[int], rate_hz: float, seconds: float, size: Sequence[int],
        config_path: Optional[str], cache_dir: str, profile: bool,
        modes: Sequence[str] = ('one_node', 'separate_nodes'), rounds: int = 1) -> dict:
    """Measure every configuration, ``rounds`` times interleaved; the JSON-ready report."""
    files = prepare_model_files(config_path, 0, cache_dir, need_onnx=True)
    model_path = str(Path(files['onnx']).resolve())
    rows = []
    rclpy.init()
    try:
        with tempfile.TemporaryDirectory() as log_dir:
            for round_index in range(rounds):
                for cameras in camera_counts:
                    chosen = [mode for mode in modes
                              if cameras > 1 or mode.startswith('one_node')]
                    shift = round_index % len(chosen)  # rotate the order between rounds
                    for mode in chosen[shift:] + chosen[:shift]:
                        row = measure(cameras, mode, model_path, size, rate_hz, seconds,
                                      Path(log_dir), profile)
                        row['round'] = round_index
                        rows.append(row)
                        print(f'  round {round_index}, {cameras} camera(s), {mode}: '
                              f"{row['heatmaps_per_s']:.1f} heatmaps/s, peak RSS "
                              f"{row['peak_rss_mib']:.0f} MiB, load "
                              f"{row['load_average_before']}", flush=True)
    finally:
        rclpy.try_shutdown()
    return {'machine': describe_machine(), 'load_average_after': load_average(), 'rows': rows,
            'targets': judge(rows), 'rate_hz': rate_hz, 'seconds': seconds,
            'frame_size': list(size), 'fastdds_profile': profile, 'rounds': rounds,
            'model': config_path or 'full-size architecture, random weights'}


def median_rows(rows: Sequence[dict]) -> Dict[tuple, dict]:
    """(cameras, mode) -> the row of median throughput over the rounds."""
    groups: Dict[tuple, List[dict]] = {}
    for row in rows:
        groups.setdefault((row['cameras'], row['mode']), []).append(row)
    return {key: sorted(group, key=lambda row: row['heatmaps_per_s'])[len(group) // 2]
            for key, group in groups.items()}


def judge(rows: Sequence[dict]) -> Dict[str, dict]:
    """Compare against the targets: RSS ratio and throughput of one node vs separate nodes.

    With several rounds each (cameras, mode) is represented by its median-throughput row.
    """
    by_key = median_rows(rows)
    verdicts = {}
    single = by_key.get((1, 'one_node'))
    largest = max((row['cameras'] for row in rows), default=1)
    many = by_key.get((largest, 'one_node'))
    if single and many and largest > 1:
        ratio = many['peak_rss_mib'] / single['peak_rss_mib']
        verdicts['rss'] = {'cameras': largest, 'ratio_vs_one_camera': ratio,
                           'target': TARGET_RSS_RATIO, 'met': ratio <= TARGET_RSS_RATIO}
        separate = by_key.get((largest, 'separate_nodes'))
        if separate:
            verdicts['rss']['separate_nodes_ratio'] = (separate['peak_rss_mib']
                                                       / single['peak_rss_mib'])
    for cameras in sorted({row['cameras'] for row in rows if row['cameras'] > 1}):
        one, separate = by_key.get((cameras, 'one_node')), by_key.get((cameras,
                                                                       'separate_nodes'))
        if one and separate:
            ratio = one['heatmaps_per_s'] / max(separate['heatmaps_per_s'], 1e-9)
            # 0.1%: the streams' durations, measured by each camera process, differ by ms
            verdicts[f'throughput_{cameras}'] = {'one_vs_separate': ratio,
                                                 'met': ratio >= 1.0 - THROUGHPUT_TOLERANCE}
        sequential = by_key.get((cameras, 'one_node_sequential'))
        if one and sequential:
            verdicts[f'overlap_{cameras}'] = {
                'overlap_vs_sequential': one['heatmaps_per_s'] / max(
                    sequential['heatmaps_per_s'], 1e-9)}
        old_separate = by_key.get((cameras, 'separate_nodes_sequential'))
        if one and old_separate:
            verdicts[f'throughput_{cameras}_vs_sequential_nodes'] = {
                'one_vs_separate': one['heatmaps_per_s'] / max(
                    old_separate['heatmaps_per_s'], 1e-9)}
    return verdicts


def format_table(report: dict) -> str:
    """Return the report as a fixed-width table."""
    width, height = report['frame_size']
    lines = [f"{report['model']}, ONNX Runtime CPU; {report['rate_hz']:.0f} Hz per camera, "
             f"{width}x{height} rgb8 best effort, {report['seconds']:.0f} s per row, FastDDS "
             f"profile {'on both sides' if report['fastdds_profile'] else 'off'}; load after "
             f"{report['load_average_after']}",
             f"{'rnd':>3s} {'cams':>4s} {'setup':25s} {'nodes':>5s} {'sent':>5s} "
             f"{'heatmaps/s':>10s} "
             f"{'per camera Hz':>16s} {'p50 ms':>7s} {'p90 ms':>7s} {'peak RSS MiB':>12s} "
             f"{'CPU ms/map':>10s} {'cores':>5s} {'per inference':>13s} "
             f"{'load before':>16s}"]
    for row in report['rows']:
        per_camera = '/'.join(f'{hz:.1f}' for hz in row['per_camera_hz'])
        delay = row['delay_ms']
        lines.append(
            f"{row.get('round', 0):3d} {row['cameras']:4d} {row['mode']:25s} "
            f"{row['nodes']:5d} {row['sent']:5d} "
            f"{row['heatmaps_per_s']:10.1f} {per_camera:>16s} "
            f"{delay['p50'] if delay['p50'] is not None else float('nan'):7.1f} "
            f"{delay['p90'] if delay['p90'] is not None else float('nan'):7.1f} "
            f"{row['peak_rss_mib']:12.0f} {row['cpu_ms_per_heatmap']:10.1f} "
            f"{row.get('cpu_cores_used', float('nan')):5.2f} "
            f"{row.get('frames_per_inference_mean') or 1.0:13.2f} "
            f"{str(row['load_average_before']):>16s}")
    for name, verdict in report['targets'].items():
        details = ', '.join(f'{key} {value:.2f}' if isinstance(value, float) else
                            f'{key} {value}' for key, value in verdict.items())
        lines.append(f'target {name}: {details}')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments, run, print the table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cameras', default='1,2,3', help='camera counts to measure')
    parser.add_argument('--rate', type=float, default=15.0, help='Hz per camera')
    parser.add_argument('--seconds', type=float, default=12.0, help='stream length per row')
    parser.add_argument('--size', default='320x240', help='camera frame WIDTHxHEIGHT')
    parser.add_argument('--config', default='config/model_synthetic.yaml',
                        help='model config YAML (random weights where its files are missing)')
    parser.add_argument('--modes', default='one_node,separate_nodes',
                        help=f'comma-separated setups among {",".join(MODES)}')
    parser.add_argument('--rounds', type=int, default=1,
                        help='repeat every setup this often, interleaved')
    parser.add_argument('--no-profile', action='store_true',
                        help='no FastDDS profile for cameras and nodes')
    parser.add_argument('--cache-dir', default='outputs/bench/cache')
    parser.add_argument('--out', help='JSON report (default outputs/bench/multicam.json, '
                        'or multicam_pipeline.json with --pipeline-only)')
    parser.add_argument('--pipeline-only', action='store_true',
                        help='no ROS: time FramePipeline.run_batch per batch size')
    parser.add_argument('--backend', default='onnxruntime',
                        choices=('onnxruntime', 'torch', 'tensorrt'),
                        help='--pipeline-only backend')
    parser.add_argument('--device', default='cpu', help='--pipeline-only device')
    parser.add_argument('--batches', default='1,2,3', help='--pipeline-only batch sizes')
    parser.add_argument('--repeats', type=int, default=10, help='--pipeline-only repeats')
    args = parser.parse_args(argv)
    size = [int(side) for side in args.size.split('x')]
    if args.pipeline_only:
        report = measure_pipeline_batches(
            args.backend, args.device, [int(count) for count in args.batches.split(',')],
            size, args.config or None, args.cache_dir, args.repeats)
        print(format_pipeline_table(report))
        write_report(report, args.out or 'outputs/bench/multicam_pipeline.json')
        return 0
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(20 + os.getpid() % 200))  # apart from others
    report = run([int(count) for count in args.cameras.split(',')], args.rate, args.seconds,
                 size, args.config or None, args.cache_dir, not args.no_profile,
                 modes=[mode for mode in args.modes.split(',') if mode], rounds=args.rounds)
    print(format_table(report))
    write_report(report, args.out or 'outputs/bench/multicam.json')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
