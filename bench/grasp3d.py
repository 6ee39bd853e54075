"""Per-frame cost of the node's 3D stages on VGA depth, against the old grasp-point path.

    .venv/bin/python -m bench.grasp3d [--rounds 200] [--out outputs/bench/grasp3d.json]

A 640x480 ``16UC1`` depth message of a noisy tilted plane (1 mm noise, 3% background jumps)
and elliptic grasp regions covering 5%, 20% and 50% of the image. Per region, interleaved in
one run (so machine load hits every function alike), it times what the worker does per frame
with ``enable_3d``:

* ``depth``: decode the depth message (``perception.image_codecs.image_msg_to_array``);
* ``grasp_point``: region back-projection and grasp point (``geometry.grasp3d``, no pose);
* ``grasp_pose``: the plane fit (``geometry.grasp_pose.estimate_grasp_pose``);
* ``publish_3d``: building the PointCloud2, PoseStamped and marker messages;

and, as the baseline, the grasp-point path the node ran before the 3D outputs existed (whole
image to metres, then the mask centroid at the median valid depth; kept here as the baseline).
The budget of the 3D stages is 3 ms a frame.
It also reports the pose's accuracy on the plane (normal error in degrees).
"""

import argparse
from typing import Dict, List, Optional

from affordance_grounding.geometry.depth import depth_to_metres, intrinsics_from_k
from affordance_grounding.geometry.grasp3d import compute_3d_outputs
from affordance_grounding.geometry.grasp_pose import estimate_grasp_pose
from affordance_grounding.perception.image_codecs import image_msg_to_array
from affordance_grounding.ros.conversions import array_to_image_msg
from affordance_grounding.ros.messages import (
    to_grasp_markers, to_grasp_pose_markers, to_point_cloud, to_pose_stamped)
from bench.machine import describe_machine
from bench.timing import load_average, summarize, time_interleaved, write_report
import cv2
import numpy as np
from std_msgs.msg import Header

HEIGHT, WIDTH = 480, 640
K_MATRIX = [600.0, 0.0, 319.5, 0.0, 590.0, 241.0, 0.0, 0.0, 1.0]
NORMAL = np.array([0.35, -0.25, -1.0]) / np.linalg.norm([0.35, -0.25, -1.0])
PLANE_POINT = np.array([0.03, 0.02, 0.9])
BUDGET_MS = 3.0
STAGES = ('depth', 'grasp_point', 'grasp_pose', 'publish_3d')
REGION_FRACTIONS = (0.05, 0.2, 0.5)


def plane_depth_mm(seed: int = 0) -> np.ndarray:
    """(480, 640) uint16 millimetres of the tilted plane with noise and background jumps."""
    rng = np.random.default_rng(seed)
    k = intrinsics_from_k(K_MATRIX)
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rays = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=-1)
    depth = (NORMAL @ PLANE_POINT) / (rays @ NORMAL) + rng.normal(0, 0.001, u.shape)
    depth[rng.random(u.shape) < 0.03] = 2.5
    return np.round(depth * 1000).astype(np.uint16)


def region_mask(fraction: float) -> np.ndarray:
    """Draw an elliptic region (axes 2:1, tilted 20 degrees) covering ``fraction`` of the image."""
    minor = int(round(np.sqrt(fraction * HEIGHT * WIDTH / (2 * np.pi))))
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(mask, (WIDTH // 2, HEIGHT // 2), (2 * minor, minor), 20, 0, 360, 255, -1)
    return mask


def old_grasp_point(depth_msg, mask: np.ndarray) -> tuple:
    """Run the baseline: what the worker did per frame before the 3D outputs."""
    depth, encoding = image_msg_to_array(depth_msg)
    k = intrinsics_from_k(K_MATRIX)
    depth_m = depth_to_metres(depth, encoding)  # (H, W): the whole image, as it did
    rows, cols = np.nonzero(mask)  # (N,) pixels of the region
    depths = depth_m[rows, cols]
    z = float(np.median(depths[np.isfinite(depths)]))
    return ((cols.mean() - k.cx) * z / k.fx, (rows.mean() - k.cy) * z / k.fy, z)


def measure_region(fraction: float, depth_msg, rounds: int) -> Dict:
    """Time every stage for one region size; returns medians in ms and the pose accuracy."""
    mask = region_mask(fraction)
    heatmap = mask.astype(np.float32) / 255.0
    header = Header(frame_id='camera_color_optical_frame')
    depth, encoding = image_msg_to_array(depth_msg)
    chain = compute_3d_outputs(depth, encoding, mask, heatmap, (HEIGHT, WIDTH), K_MATRIX)
    pose = chain.pose.pose

    def publish_3d():
        to_point_cloud(header, chain.cloud.xyzi)
        to_pose_stamped(header, pose)
        to_grasp_markers(header, chain.point.xyz_m, 'hold')
        to_grasp_pose_markers(header, pose)

    functions = {
        'baseline (old grasp point)': lambda: old_grasp_point(depth_msg, mask),
        'depth': lambda: image_msg_to_array(depth_msg),
        'grasp_point': lambda: compute_3d_outputs(depth, encoding, mask, heatmap,
                                                  (HEIGHT, WIDTH), K_MATRIX, want_pose=False),
        'grasp_pose': lambda: estimate_grasp_pose(chain.cloud.points),
        'publish_3d': publish_3d,
    }
    samples = time_interleaved(functions, rounds, warmup=3)
    medians = {name: summarize(values)['median_s'] * 1e3 for name, values in samples.items()}
    minimums = {name: summarize(values)['min_s'] * 1e3 for name, values in samples.items()}
    total = sum(medians[stage] for stage in STAGES)
    total_min = sum(minimums[stage] for stage in STAGES)
    normal_error = np.degrees(np.arccos(np.clip(pose.rotation[:, 2] @ -NORMAL, -1, 1)))
    return {'region_fraction': fraction, 'region_pixels': int((mask > 0).sum()),
            'stage_median_ms': medians, 'stage_min_ms': minimums, 'total_3d_ms': total,
            'total_3d_min_ms': total_min,
            'ratio_to_baseline': total / medians['baseline (old grasp point)'],
            'within_budget': total < BUDGET_MS, 'normal_error_deg': float(normal_error),
            'cloud_points': int(len(chain.cloud.points))}


def format_table(rows: List[Dict]) -> str:
    """Return the report as a text table (ms per frame, medians)."""
    names = ['baseline (old grasp point)'] + list(STAGES)
    short = {'baseline (old grasp point)': 'old point'}
    lines = [f"{'region':>8s} {'pixels':>7s} "
             + ' '.join(f'{short.get(n, n):>12s}' for n in names)
             + f" {'3D total':>9s} {'(best)':>7s} {'x base':>7s} {'normal err':>10s}"]
    for row in rows:
        medians = row['stage_median_ms']
        lines.append(f"{row['region_fraction']:>7.0%} {row['region_pixels']:>7d} "
                     + ' '.join(f'{medians[n]:>12.3f}' for n in names)
                     + f" {row['total_3d_ms']:>9.3f} {row['total_3d_min_ms']:>7.3f}"
                     + f" {row['ratio_to_baseline']:>7.2f}"
                     + f" {row['normal_error_deg']:>9.2f}d")
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark, print the table, write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=200, help='timed calls per function')
    parser.add_argument('--out', default='outputs/bench/grasp3d.json')
    args = parser.parse_args(argv)
    depth_msg = array_to_image_msg(plane_depth_mm(), '16UC1', Header())
    rows = [measure_region(fraction, depth_msg, args.rounds) for fraction in REGION_FRACTIONS]
    print(f'3D stages per VGA frame, median ms over {args.rounds} interleaved rounds '
          f'(budget {BUDGET_MS} ms; "best" sums the per-stage minimums, the uncontended '
          f'cost; load average {load_average()}):')
    print(format_table(rows))
    write_report({'machine': describe_machine(), 'load_average': load_average(),
                  'budget_ms': BUDGET_MS, 'rounds': args.rounds, 'regions': rows}, args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
