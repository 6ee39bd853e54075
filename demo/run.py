"""``make demo``: the whole job on this machine, from synthetic data to node outputs.

    .venv/bin/python -m demo.run [--out outputs/demo] [--epochs 6] [--frames-per-scene 5]

1. builds the synthetic data set, trains a small model briefly, exports it to ONNX
   (each step reused when its inputs are unchanged: demo/pipeline.py);
2. starts ``affordance_node`` (ONNX Runtime, CPU, 3D on) in its own process;
3. plays a sequence over real topics: synthetic test scenes with their affordance and two
   real photos, each with its action command, plus a depth plane and camera info;
4. writes per-scene overlays, masks and heatmaps, a contact sheet (image | overlay | mask |
   ground truth) and a latency summary (stamp -> heatmap received, and the node's split).
"""

import argparse
import json
from pathlib import Path
import time
from typing import List, Optional, Sequence

import cv2
from demo.pipeline import build_model
from demo.scenes import build_scenes, Scene
from demo.sheet import write_contact_sheet, write_scene_outputs
from harness.graph_client import (
    collect_stage_means, GraphClient, wait_for_diagnostics)
from harness.node_process import NodeProcess
import numpy as np
import rclpy

FRAME_TIMEOUT_S = 10.0
MAX_LOST_FRAMES = 10


def play_scene(client: GraphClient, scene: Scene, frames: int) -> dict:
    """Command the scene's action, publish its image ``frames`` times, collect the outputs."""
    if not client.messages('active_action') or \
            client.messages('active_action')[-1].data != scene.action:
        count = len(client.messages('active_action'))
        client.send_action(scene.action)
        client.wait_for('active_action', lambda msg: msg.data == scene.action and
                        len(client.messages('active_action')) > count)
    latencies_s, outputs, lost = [], {}, 0
    while len(latencies_s) < frames:
        header = client.make_header('camera_color_optical_frame')
        client.depth_pub.publish(scene.depth_msg(header))
        client.info_pub.publish(scene.camera_info(header))
        time.sleep(0.02)  # depth before colour, as a camera driver would
        sent = time.time()
        client.publish_image(scene.rgb, stamp=header.stamp)
        same = lambda msg: msg.header.stamp == header.stamp  # noqa: E731
        try:
            outputs['heatmap'] = client.wait_for('heatmap', same, timeout_s=FRAME_TIMEOUT_S)
        except TimeoutError:  # best-effort input: a camera's next frame would replace it
            lost += 1
            if lost > MAX_LOST_FRAMES:
                raise
            continue
        latencies_s.append(time.time() - sent)
        for topic in ('grasp_mask', 'overlay'):
            outputs[topic] = client.wait_for(topic, same, timeout_s=30.0)
        try:  # published after the images; absent when no valid depth is in the mask
            outputs['grasp_point'] = client.wait_for('grasp_point', same, timeout_s=2.0)
        except TimeoutError:
            outputs['grasp_point'] = None
    return {'latencies_s': latencies_s, 'outputs': outputs, 'lost': lost}


def summarise_latency(latencies_ms: List[float], stages: dict, backend: str) -> dict:
    """Percentiles of stamp -> heatmap received, and the node's per-stage means."""
    node_ms = sum(stages.values())
    return {
        'frames': len(latencies_ms),
        'stamp_to_heatmap_ms': {'median': float(np.median(latencies_ms)),
                                'p90': float(np.percentile(latencies_ms, 90)),
                                'max': float(np.max(latencies_ms))},
        'node_stage_mean_ms': stages,
        'share_outside_model': (node_ms - stages['inference']) / node_ms if node_ms else None,
        'backend': backend,
    }


def print_summary(summary: dict) -> None:
    """Print the latency table."""
    latency = summary['stamp_to_heatmap_ms']
    print(f"\nlatency over {summary['frames']} frames ({summary['backend']}): stamp -> heatmap "
          f"received median {latency['median']:.1f} ms, p90 {latency['p90']:.1f} ms, "
          f"max {latency['max']:.1f} ms")
    print(f"{'node stage':14s} {'mean ms':>8s}")
    for stage, ms in summary['node_stage_mean_ms'].items():
        print(f'{stage:14s} {ms:8.2f}')
    if summary['share_outside_model'] is not None:
        print(f"share of node time outside the model: {summary['share_outside_model']:.1%}")


def run(out_dir: Path, epochs: int, frames: int) -> dict:
    """Build the model, start the node, play every scene, write the outputs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(out_dir, epochs)
    print(f"model: {model['onnx']} (backbones {model['model_config']}; reused: "
          f"{', '.join(model['reused']) or 'nothing'})")
    scenes = build_scenes(Path(model['data_root']))
    node = NodeProcess(out_dir / 'node.log', {
        'model_path': str(Path(model['onnx']).resolve()), 'backend': 'onnxruntime',
        'device': 'cpu', 'enable_3d': True, 'max_image_age_s': 0.0,
        # A played sequence is not a live camera: like `ros2 bag play`, deliver every frame.
        # (Best effort drops frames above FastDDS's 512 KiB shared-memory segment when the
        # kernel's UDP buffers are small: the 600x400 photo is 720 KB.)
        'image_qos': 'reliable'})
    rclpy.init()
    client = GraphClient(name='affordance_demo')
    results, latencies_ms, frames_played = [], [], 0
    try:
        client.wait_for_node(timeout_s=120.0, with_depth=True)
        for scene in scenes:
            played = play_scene(client, scene, frames)
            latencies_ms += [seconds * 1e3 for seconds in played['latencies_s'][1:]]
            frames_played += len(played['latencies_s'])
            write_scene_outputs(out_dir / 'scenes', scene, played['outputs'])
            results.append((scene, played['outputs']))
            print(f'{scene.name:28s} {scene.action:11s} '
                  f"{np.median(played['latencies_s']) * 1e3:7.1f} ms")
        diagnostics = wait_for_diagnostics(  # the period that saw the last frame has ended
            client, lambda values: int(values['frames published']) >= frames_played)
        stages = collect_stage_means(client)
    finally:
        client.close()
        rclpy.try_shutdown()
        node.stop()
    write_contact_sheet(out_dir / 'contact_sheet.png', results)
    summary = dict(summarise_latency(latencies_ms, stages, diagnostics['backend']), model=model,
                   scenes=[scene.name for scene in scenes])
    (out_dir / 'latency.json').write_text(json.dumps(summary, indent=2) + '\n')
    print_summary(summary)
    print(f"\nwrote {out_dir / 'contact_sheet.png'}, {out_dir / 'scenes'}/, "
          f"{out_dir / 'latency.json'}")
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse arguments and run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='outputs/demo', help='output folder')
    parser.add_argument('--epochs', type=int, default=6, help='training epochs')
    parser.add_argument('--frames-per-scene', type=int, default=5,
                        help='times each image is published (latency samples)')
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    run(Path(args.out), args.epochs, args.frames_per_scene)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
