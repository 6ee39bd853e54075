"""Colour-aligned depth and the pinhole camera: the one REP-118 depth rule (no ROS needed).

Depth follows REP-118: ``16UC1`` (and ``mono16``) hold millimetres with 0 = no return,
``32FC1`` holds metres with NaN = no return, +inf = too far and -inf = too close. All of
these are invalid and never enter a depth estimate. Points are in the camera optical frame
(x right, y down, z forward), so no TF lookup is needed.
"""

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

MILLIMETRE_ENCODINGS: Tuple[str, ...] = ('16UC1', 'mono16')
METRE_ENCODINGS: Tuple[str, ...] = ('32FC1',)
DEPTH_ENCODINGS: Tuple[str, ...] = MILLIMETRE_ENCODINGS + METRE_ENCODINGS


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels (the K matrix of ``sensor_msgs/CameraInfo``)."""

    fx: float
    fy: float
    cx: float
    cy: float


def intrinsics_from_k(k: Sequence[float]) -> CameraIntrinsics:
    """Read fx, fy, cx, cy from a row-major 3x3 K (``CameraInfo.k``, 9 numbers)."""
    if len(k) != 9:
        raise ValueError(f'K must have 9 row-major entries, got {len(k)}')
    return CameraIntrinsics(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]))


def check_intrinsics(k: CameraIntrinsics) -> None:
    """Raise ``ValueError`` unless the focal lengths are positive and finite."""
    if not (np.isfinite(k.fx) and np.isfinite(k.fy) and k.fx > 0 and k.fy > 0):
        raise ValueError(f'focal lengths must be positive and finite, got fx={k.fx}, '
                         f'fy={k.fy}; is the camera calibrated (CameraInfo.k non-zero)?')


def check_depth_matches_image(depth_hw: Tuple[int, int], image_hw: Tuple[int, int]) -> None:
    """Raise ``ValueError`` unless depth and colour have the same (height, width)."""
    if tuple(depth_hw) != tuple(image_hw):
        raise ValueError(
            f'depth image is {depth_hw[1]}x{depth_hw[0]} but the colour image is '
            f'{image_hw[1]}x{image_hw[0]} (width x height); subscribe to depth aligned to '
            f'the colour camera (e.g. aligned_depth_to_color/image_raw)')


def depth_to_metres(values: np.ndarray, encoding: str) -> np.ndarray:
    """Raw depth values -> float32 metres, NaN for every invalid value (REP-118), any shape.

    The 3D chain applies it to the grasp region's pixels only, which keeps VGA depth cheap;
    a whole (H, W) image works the same way.

    Args:
        values: Raw depth as decoded from the message (an image or a gather of its pixels).
        encoding: ``16UC1``/``mono16`` (millimetres, 0 = invalid) or ``32FC1`` (metres).

    Returns:
        A new float32 array of the same shape; 0, negative, NaN and +/-inf become NaN.

    Raises:
        ValueError: For an encoding that is not a depth encoding.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f'unsupported depth encoding {encoding!r}; expected one of '
                         f'{list(DEPTH_ENCODINGS)} (REP-118)')
    metres = np.asarray(values).astype(np.float32)  # always a copy: the message stays intact
    if encoding in MILLIMETRE_ENCODINGS:
        metres *= np.float32(0.001)
    with np.errstate(invalid='ignore'):
        metres[~np.isfinite(metres) | (metres <= 0.0)] = np.nan
    return metres
