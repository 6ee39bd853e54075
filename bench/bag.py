"""Offline bag processing (``affordance_bag``) against the node's live rate, on the same model.

    .venv/bin/python -m bench.bag [--config config/model_synthetic.yaml] [--frames 120]
        [--size 640x480] [--batches 1,8] [--rounds 3] [--compression .jpg]
        [--node-seconds 0] [--out outputs/bench/bag.json]

A synthetic recording (rgb8 or compressed images, an action topic) is written with rosbags,
then, interleaved over ``--rounds`` rounds so that the shared machine's load hits every mode
alike:

- ``live``: what the node does per frame, one frame at a time in this process: deserialize
  and decode the image, the frame pipeline with the overlay, build and serialize the three
  image outputs; the backend has the node's settings and runs in a thread set up like the
  node's worker (one torch thread). 1 / (time per frame) is the highest
  rate the node can sustain on this model, without DDS transport.
- ``live, main thread``: the same from the main thread (two torch threads for the resize).
- ``inference only, batch N``: ``backend.infer`` alone on random batches, per frame.
- ``offline batch N``: ``affordance_bag`` end to end (read, decode, batched inference,
  write an mcap with the inputs copied), through :func:`run_bag`; the largest batch also
  without overlapping inference with reading and writing (``--no-overlap``).

With ``--node-seconds S`` the real node also runs (bench/node.py's machinery): a camera
stream at twice the live rate for S seconds, and the heatmap rate the node delivers.
"""

import argparse
from functools import partial
from pathlib import Path
import shutil
import statistics
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from affordance_grounding.bag import messages
from affordance_grounding.bag.batching import start_inference_thread
from affordance_grounding.bag.processing import BagJob, load_backend, run_bag
from affordance_grounding.bag.reading import InputTopics, open_bag
from affordance_grounding.inference.backends import BackendOptions
from affordance_grounding.inference.selection import create_backend
from affordance_grounding.perception.frame_pipeline import FramePipeline, OutputSettings
from affordance_grounding.perception.image_codecs import (
    compressed_image_msg_to_rgb, image_msg_to_rgb)
from bench.bag_recording import COMPRESSED_TOPIC, IMAGE_TOPIC, RecordingSpec, write_recording
from bench.machine import describe_machine
from bench.memory import prepare_model_files
from bench.timing import load_average, write_report
import numpy as np

DEFAULT_CONFIG = 'config/model_synthetic.yaml'


def read_image_messages(path: Path, topic: str) -> List[tuple]:
    """(message type, serialized bytes) of every image, read once before timing."""
    reader = open_bag(path)
    try:
        connections = [conn for conn in reader.connections if conn.topic == topic]
        return [(conn.msgtype, bytes(raw)) for conn, _, raw in reader.messages(connections)]
    finally:
        reader.close()


def measure_live(pipeline: FramePipeline, images: Sequence[tuple]) -> float:
    """Seconds to take every image through the node's per-frame work, one at a time."""
    typestore = messages.load_typestore()
    settings = OutputSettings()
    hold = pipeline.labels.index('hold')
    start = time.perf_counter()
    for msgtype, raw in images:
        msg = typestore.deserialize_cdr(raw, msgtype)
        rgb = (compressed_image_msg_to_rgb(msg) if msgtype == messages.COMPRESSED_IMAGE
               else image_msg_to_rgb(msg))
        outputs = pipeline.run(rgb, hold, settings, overlay_label='hold')
        for array_, encoding in ((outputs.heatmap, '32FC1'), (outputs.mask, 'mono8'),
                                 (outputs.overlay, 'bgr8')):
            out = messages.to_image_msg(typestore, array_, encoding, msg.header)
            typestore.serialize_cdr(out, messages.IMAGE)
    return time.perf_counter() - start


def measure_inference(backend, frames: int, batch: int) -> float:
    """Seconds of ``backend.infer`` alone for ``frames`` frames in batches of ``batch``."""
    size = backend.metadata.image_size
    images = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    calls = -(-frames // batch)
    start = time.perf_counter()
    for _ in range(calls):
        backend.infer(images)
    return (time.perf_counter() - start) * frames / (calls * batch)


def measure_offline(job: BagJob, backend) -> float:
    """Seconds of one ``affordance_bag`` run (the output is deleted afterwards)."""
    start = time.perf_counter()
    summary = run_bag(job, backend=backend, log=lambda line: None)
    seconds = time.perf_counter() - start
    if summary.frames_out != summary.frames_in:
        raise RuntimeError(f'the bag run skipped frames: {dict(summary.skipped)}')
    shutil.rmtree(job.output_path)
    return seconds


def measure_node_rate(model_path: str, frame, rate_hz: float, seconds: float,
                      log_dir: Path) -> dict:
    """Heatmap rate of the real node under a camera stream (bench/node.py)."""
    import rclpy

    from bench.node import measure_node

    rclpy.init()
    try:
        return measure_node('onnxruntime', model_path, frame, rate_hz, seconds, log_dir,
                            'reliable')
    finally:
        rclpy.try_shutdown()


def _in_thread(thread, function, *args) -> float:
    return thread.submit(function, *args).result()


def run(config_path: str, frames: int, size: Sequence[int], batches: Sequence[int],
        rounds: int, compression: str, node_seconds: float, cache_dir: str) -> dict:
    """Measure every mode; returns the JSON-ready report."""
    model_path = str(Path(prepare_model_files(config_path, 0, cache_dir, True)['onnx'])
                     .resolve())
    live_backend = create_backend('onnxruntime', model_path, 'cpu',
                                  BackendOptions(cpu_spin_wait=False)).load()  # the node's
    live = FramePipeline(live_backend)
    live_thread = start_inference_thread(live_backend)  # the node's worker thread set-up
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        spec = RecordingSpec(frames=frames, compression=compression, size=tuple(size))
        rgbs = write_recording(scratch / 'recording', spec)
        topic = COMPRESSED_TOPIC if compression else IMAGE_TOPIC
        images = read_image_messages(scratch / 'recording', topic)
        variants = [(batch, True) for batch in batches] + [(max(batches), False)]
        jobs = {variant: BagJob(scratch / 'recording', scratch / 'out', model_path,
                                InputTopics(topic), backend='onnxruntime', device='cpu',
                                batch_size=variant[0], progress=False, overlap=variant[1])
                for variant in variants}
        backends = {batch: load_backend(jobs[batch, True]) for batch in batches}
        modes = {'live': lambda: live_thread.submit(measure_live, live, images).result(),
                 'live, main thread': partial(measure_live, live, images)}
        for batch in batches:
            modes[f'inference only, batch {batch}'] = partial(
                _in_thread, live_thread, measure_inference, backends[batch], frames, batch)
        for batch, overlap in variants:
            name = f'offline batch {batch}' + ('' if overlap else ', no overlap')
            modes[name] = partial(measure_offline, jobs[batch, overlap], backends[batch])
        modes['live']()  # warm-up (allocations, first runs), not measured
        for batch in batches:
            backends[batch].warm_up(batch_size=batch)
        samples: Dict[str, List[float]] = {name: [] for name in modes}
        for _ in range(rounds):
            for name, function in modes.items():
                samples[name].append(function())
        node = None
        if node_seconds > 0:
            live_hz = frames / statistics.median(samples['live'])
            node = measure_node_rate(model_path, rgbs[0], 2 * live_hz, node_seconds, scratch)
    live_s = statistics.median(samples['live'])
    rows = [{'mode': name, 'frames_per_s': frames / statistics.median(seconds),
             'ms_per_frame': statistics.median(seconds) / frames * 1e3,
             'vs_live': statistics.median(samples['live']) / statistics.median(seconds),
             'seconds': seconds} for name, seconds in samples.items()]
    report = {'machine': describe_machine(measure_gemm=False), 'load_average': load_average(),
              'model': config_path, 'model_file': Path(model_path).name, 'frames': frames,
              'frame_size': list(size), 'compression': compression or 'raw rgb8',
              'rounds': rounds, 'rows': rows, 'live_frames_per_s': frames / live_s}
    if node is not None:
        report['node'] = {key: node[key] for key in ('sent', 'outputs', 'output_hz',
                                                     'stage_mean_ms')}
    return report


def format_table(report: dict) -> str:
    """Return the report as a fixed-width table."""
    lines = [f"{report['model']} (ONNX Runtime CPU); {report['frames']} frames of "
             f"{report['frame_size'][0]}x{report['frame_size'][1]} {report['compression']}, "
             f"median of {report['rounds']} interleaved rounds; load {report['load_average']}",
             f"{'mode':30s} {'frames/s':>9s} {'ms/frame':>9s} {'vs live':>8s}"]
    for row in report['rows']:
        lines.append(f"{row['mode']:30s} {row['frames_per_s']:9.1f} {row['ms_per_frame']:9.1f} "
                     f"{row['vs_live']:7.2f}x")
    if 'node' in report:
        node = report['node']
        lines.append(f"{'node (DDS)':30s} {node['output_hz']:9.1f} {'':>9s} "
                     f"{node['output_hz'] / report['live_frames_per_s']:7.2f}x  "
                     f"(heatmaps/s under a {node['sent']}-frame stream)")
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments, run, print the table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='model config YAML')
    parser.add_argument('--frames', type=int, default=120)
    parser.add_argument('--size', default='640x480', help='frame WIDTHxHEIGHT')
    parser.add_argument('--batches', default='1,8', help='offline batch sizes to measure')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--compression', default='', choices=('', '.jpg', '.png'),
                        help='record CompressedImage (default: raw rgb8 Image)')
    parser.add_argument('--node-seconds', type=float, default=0.0,
                        help='also stream to the real node for this long (0: skip)')
    parser.add_argument('--cache-dir', default='outputs/bench/cache')
    parser.add_argument('--out', default='outputs/bench/bag.json')
    args = parser.parse_args(argv)
    report = run(args.config, args.frames, [int(side) for side in args.size.split('x')],
                 [int(batch) for batch in args.batches.split(',')], args.rounds,
                 args.compression, args.node_seconds, args.cache_dir)
    print(format_table(report))
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
