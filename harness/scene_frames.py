"""Test frames for the node over DDS: a structured scene, its camera info, stamp matching.

Shared by the node's graph tests (single camera and several cameras), so every test drives
the node with the same image and intrinsics.
"""

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo

HEIGHT, WIDTH = 240, 320
FX, FY, CX, CY = 250.0, 240.0, 161.5, 118.5


def scene(seed: int = 0) -> np.ndarray:
    """Return a (240, 320, 3) uint8 RGB test image with structure (not flat noise)."""
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (WIDTH, HEIGHT),
                       interpolation=cv2.INTER_CUBIC)
    cv2.circle(image, (200, 120), 50, (240, 200, 30), -1)
    return image


def same_stamp(header):
    """Return a predicate matching a message with exactly this header stamp."""
    return lambda msg: (msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        header.stamp.sec, header.stamp.nanosec)


def camera_info(header) -> CameraInfo:
    """Return the pinhole intrinsics of :func:`scene` frames, with ``header``."""
    info = CameraInfo(header=header, height=HEIGHT, width=WIDTH, distortion_model='plumb_bob')
    info.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    return info
