"""The 3D grasp point of one frame from its paired depth image and intrinsics.

The same steps as the node's worker (ros/frame_worker.py), on ``rosbags`` messages: decode
depth (REP-118), check alignment, bring the mask to camera pixels, back-project
(runtime/grasp.py does the maths).
"""

from typing import Tuple

from affordance_grounding.ros.conversions import image_msg_to_array
from affordance_grounding.runtime.grasp import (
    check_depth_matches_image, compute_grasp_point, depth_to_metres, GraspPointResult,
    intrinsics_from_k)
import cv2
import numpy as np


def locate_grasp_point(mask: np.ndarray, image_hw: Tuple[int, int], depth_msg,
                       camera_info) -> GraspPointResult:
    """Back-project the grasp mask of a frame with its depth image.

    Args:
        mask: (h, w) uint8 grasp mask (input or model resolution).
        image_hw: (height, width) of the colour image.
        depth_msg: Colour-aligned ``sensor_msgs/Image`` depth (16UC1, mono16 or 32FC1).
        camera_info: ``sensor_msgs/CameraInfo`` of the colour camera.

    Raises:
        ValueError: If the depth cannot be decoded, is not aligned or K is unusable.
    """
    depth, encoding = image_msg_to_array(depth_msg)
    depth_m = depth_to_metres(depth, encoding)
    check_depth_matches_image(depth_m.shape, image_hw)
    if mask.shape != tuple(image_hw):  # heatmap_resolution=model: back to camera pixels
        mask = cv2.resize(mask, image_hw[::-1], interpolation=cv2.INTER_NEAREST)
    k = intrinsics_from_k(list(camera_info.k))
    return compute_grasp_point(mask, depth_m, k.fx, k.fy, k.cx, k.cy)
