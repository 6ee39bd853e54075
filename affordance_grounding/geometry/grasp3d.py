"""The 3D chain of one frame: paired depth + grasp mask -> grasp point, region cloud, grasp pose.

ROS-free so that the node, the benchmark and the tests share it; the node only pairs the depth
message by stamp, decodes it and publishes what this returns. Stages are timed separately
(``grasp_point``: mask to camera pixels, back-projection and the point; ``grasp_pose``: the
plane fit) and reported on /diagnostics next to the 2D stages (see docs/ros_interface.md).
"""

from dataclasses import dataclass, field
import time
from typing import Dict, Sequence, Tuple

from affordance_grounding.geometry.depth import (
    check_depth_matches_image, check_intrinsics, intrinsics_from_k)
from affordance_grounding.geometry.grasp_point import grasp_point_from_depths, GraspPointResult
from affordance_grounding.geometry.grasp_pose import estimate_grasp_pose, GraspPoseResult
from affordance_grounding.geometry.region_cloud import (
    back_project_region, RegionCloud, resize_to_image)
import cv2
import numpy as np


@dataclass
class Grasp3DOutputs:
    """What the 3D chain found for one frame.

    Attributes:
        point: The grasp point (mask centroid at the median valid depth), or a reason.
        cloud: The region's finite 3D points with heatmap intensities (may be empty).
        pose: The grasp pose, or a reason (``None`` reason-free when not asked for).
        timings_s: Seconds per stage (``grasp_point``, ``grasp_pose``).
    """

    point: GraspPointResult
    cloud: RegionCloud
    pose: GraspPoseResult
    timings_s: Dict[str, float] = field(default_factory=dict)


def compute_3d_outputs(depth: np.ndarray, encoding: str, mask: np.ndarray,
                       heatmap: np.ndarray, image_hw: Tuple[int, int],
                       k_matrix: Sequence[float], want_pose: bool = True) -> Grasp3DOutputs:
    """Run the 3D chain on one frame.

    Args:
        depth: (H, W) raw depth as decoded from the message, aligned to the colour image.
        encoding: Its REP-118 encoding (``16UC1``/``mono16`` mm, ``32FC1`` m).
        mask: Grasp mask at input or model resolution (resized back to camera pixels here).
        heatmap: Heatmap, same resolution as ``mask``.
        image_hw: (height, width) of the colour image.
        k_matrix: Row-major 3x3 intrinsics of the colour camera (``CameraInfo.k``).
        want_pose: Fit the grasp pose (skipped when nobody needs it).

    Returns:
        The point, cloud and pose (each possibly absent, with a reason) and stage timings.

    Raises:
        ValueError: If depth and colour sizes differ, the encoding is not a depth encoding
            or the intrinsics are unusable.
    """
    start = time.perf_counter()
    check_depth_matches_image(depth.shape[:2], image_hw)
    k = intrinsics_from_k(k_matrix)
    check_intrinsics(k)
    mask = resize_to_image(mask, image_hw)
    heatmap = resize_to_image(heatmap, image_hw, cv2.INTER_LINEAR)
    cloud = back_project_region(mask, depth, encoding, heatmap, k)
    if cloud.mask_centroid_uv is None:
        point = GraspPointResult(None, None, 0, 'the grasp mask is empty')
    else:
        point = grasp_point_from_depths(cloud.mask_centroid_uv, cloud.points[:, 2],
                                        cloud.num_mask_pixels, k)
    located = time.perf_counter()
    pose = GraspPoseResult(None)
    timings = {'grasp_point': located - start}
    if want_pose:
        pose = estimate_grasp_pose(cloud.points)
        timings['grasp_pose'] = time.perf_counter() - located
    return Grasp3DOutputs(point=point, cloud=cloud, pose=pose, timings_s=timings)
