"""The grasp point: the region's mask centroid back-projected at its median valid depth."""

from dataclasses import dataclass
from typing import Optional, Tuple

from affordance_grounding.geometry.depth import CameraIntrinsics
import numpy as np


@dataclass(frozen=True)
class GraspPointResult:
    """Where the grasp region is in 3D, or why it is not.

    Attributes:
        xyz_m: (x, y, z) in metres in the camera optical frame, or ``None`` when no point.
        pixel_uv: (u, v) centroid of the mask in pixels (column, row), or ``None``.
        num_valid_depths: Valid depth pixels inside the mask that entered the median.
        reason: Why there is no point; empty when ``xyz_m`` is set.
    """

    xyz_m: Optional[Tuple[float, float, float]]
    pixel_uv: Optional[Tuple[float, float]]
    num_valid_depths: int
    reason: str = ''


def grasp_point_from_depths(pixel_uv: Tuple[float, float], depths: np.ndarray,
                            num_mask_pixels: int, k: CameraIntrinsics) -> GraspPointResult:
    """Back-project the mask centroid ``pixel_uv`` at the median of the valid ``depths``.

    Args:
        pixel_uv: (u, v) centroid of the mask in pixels.
        depths: (N,) valid depths in metres of the mask pixels (finite, > 0).
        num_mask_pixels: Pixels in the mask (for the reason when no depth is valid).
        k: Pinhole intrinsics.
    """
    if depths.size == 0:
        return GraspPointResult(None, pixel_uv, 0,
                                f'no valid depth inside the grasp mask ({num_mask_pixels} '
                                'pixels, all 0/NaN/inf)')
    z = float(np.median(depths))
    u, v = pixel_uv
    xyz_m = ((u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z)
    return GraspPointResult(xyz_m, pixel_uv, int(depths.size))
