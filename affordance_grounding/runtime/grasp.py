"""Grasp region and 3D grasp point from a heatmap and color-aligned depth (no ROS needed).

Depth follows REP-118: ``16UC1`` (and ``mono16``) hold millimetres with 0 = no return,
``32FC1`` holds metres with NaN = no return, +inf = too far and -inf = too close. All of
these are invalid and never enter a depth estimate. Points are in the camera optical frame
(x right, y down, z forward), so no TF lookup is needed.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
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


@dataclass(frozen=True)
class GraspPointResult:
    """Outcome of :func:`compute_grasp_point`.

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


def intrinsics_from_k(k: Sequence[float]) -> CameraIntrinsics:
    """Read fx, fy, cx, cy from a row-major 3x3 K (``CameraInfo.k``, 9 numbers)."""
    if len(k) != 9:
        raise ValueError(f'K must have 9 row-major entries, got {len(k)}')
    return CameraIntrinsics(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]))


def compute_grasp_mask(heatmap: np.ndarray, threshold: float,
                       largest_component: bool = True) -> np.ndarray:
    """Threshold a heatmap and optionally keep its largest 8-connected component.

    Exactly the mask of a full-image ``cv2.connectedComponentsWithStats`` (the tests compare
    the two), but several times faster at camera resolution: that function spends most of its
    time on statistics we do not need (ten times the labelling alone at 1280x720, see
    docs/benchmarks.md). Here the labelling runs only on the bounding box of the passing
    pixels, a single region is returned as is, and areas come from a histogram of the labels.

    Args:
        heatmap: (H, W) float map, usually in [0, 1]; NaN never passes.
        threshold: Pixels with ``heatmap >= threshold`` pass.
        largest_component: Keep only the largest connected region (ties: the one OpenCV
            labels first, i.e. first met in its raster scan).

    Returns:
        (H, W) uint8 mask with values 0 and 255; all zeros when no pixel passes.
    """
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2:
        raise ValueError(f'heatmap must be (H, W), got shape {heatmap.shape}')
    passed = threshold_map(heatmap, threshold)  # (H, W) 0/255
    if not largest_component:
        return passed
    left, top, width, height = cv2.boundingRect(passed)  # of the non-zero pixels
    if width == 0:
        return passed
    # Even offsets keep OpenCV's 2x2 block scan aligned with the full image's, so ties between
    # equal areas go to the same component as a labelling of the whole image.
    rows = slice(top - top % 2, top + height)
    cols = slice(left - left % 2, left + width)
    count, labels = label_components(passed[rows, cols])  # labels (h, w), 0 = background
    if count <= 2:  # one region (or none): nothing to choose
        return passed
    areas = component_areas(labels, count)  # (count,) pixels per label
    largest = 1 + int(np.argmax(areas[1:]))
    mask = np.zeros_like(passed)
    mask[rows, cols] = cv2.compare(labels, largest, cv2.CMP_EQ)
    return mask


def threshold_map(heatmap: np.ndarray, threshold: float) -> np.ndarray:
    """(H, W) uint8: 255 where ``heatmap >= threshold`` (NaN fails), else 0."""
    if heatmap.dtype in (np.float32, np.float64) and np.isfinite(threshold):
        # One vectorised pass, 0/255 directly (NumPy's compare and cast take five times longer).
        return cv2.compare(heatmap, float(threshold), cv2.CMP_GE)
    with np.errstate(invalid='ignore'):
        return (heatmap >= threshold).astype(np.uint8) * np.uint8(255)


def label_components(binary: np.ndarray) -> Tuple[int, np.ndarray]:
    """8-connected labels of a uint8 image: (count including background, labels).

    The labels are uint16 whenever they fit, because ``cv2.calcHist`` counts uint16 but not
    int32 (see :func:`component_areas`).
    """
    try:
        return cv2.connectedComponents(binary, connectivity=8, ltype=cv2.CV_16U)
    except cv2.error:  # OpenCV refuses to overflow 65535 labels: a pixel-level noise map
        return cv2.connectedComponents(binary, connectivity=8, ltype=cv2.CV_32S)


def component_areas(labels: np.ndarray, count: int) -> np.ndarray:
    """(count,) pixels per label (``np.bincount`` would copy uint16 labels to int64 first)."""
    if labels.dtype == np.uint16 and labels.size < 2 ** 24:  # calcHist counts in float32
        return cv2.calcHist([labels], [0], None, [count], [0, count]).ravel()
    return np.bincount(labels.ravel(), minlength=count)


def depth_to_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a depth image to float32 metres with NaN for every invalid pixel (REP-118).

    Args:
        depth: (H, W) depth image as decoded from the message.
        encoding: ``16UC1``/``mono16`` (millimetres, 0 = invalid) or ``32FC1`` (metres).

    Returns:
        (H, W) float32 metres; 0, negative, NaN and +/-inf become NaN.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f'depth must be (H, W), got shape {depth.shape}')
    if encoding in MILLIMETRE_ENCODINGS:
        metres = depth.astype(np.float32) * np.float32(0.001)
    elif encoding in METRE_ENCODINGS:
        metres = depth.astype(np.float32, copy=True)
    else:
        raise ValueError(f'unsupported depth encoding {encoding!r}; expected one of '
                         f'{list(DEPTH_ENCODINGS)} (REP-118)')
    with np.errstate(invalid='ignore'):
        metres[~np.isfinite(metres) | (metres <= 0.0)] = np.nan
    return metres


def check_depth_matches_image(depth_hw: Tuple[int, int], image_hw: Tuple[int, int]) -> None:
    """Raise ``ValueError`` unless depth and colour have the same (height, width)."""
    if tuple(depth_hw) != tuple(image_hw):
        raise ValueError(
            f'depth image is {depth_hw[1]}x{depth_hw[0]} but the colour image is '
            f'{image_hw[1]}x{image_hw[0]} (width x height); subscribe to depth aligned to '
            f'the colour camera (e.g. aligned_depth_to_color/image_raw)')


def compute_grasp_point(mask: np.ndarray, depth_m: np.ndarray, fx: float, fy: float,
                        cx: float, cy: float) -> GraspPointResult:
    """Back-project the mask centroid with the median valid depth inside the mask.

    Args:
        mask: (H, W) grasp mask; non-zero pixels belong to the region.
        depth_m: (H, W) float depth in metres, NaN where invalid (see :func:`depth_to_metres`).
        fx: Focal length along x in pixels.
        fy: Focal length along y in pixels.
        cx: Principal point x (column) in pixels.
        cy: Principal point y (row) in pixels.

    Returns:
        The point in the camera optical frame, or ``xyz_m=None`` with a reason.

    Raises:
        ValueError: If the shapes differ or the focal lengths are not positive and finite.
    """
    mask = np.asarray(mask)
    depth_m = np.asarray(depth_m, dtype=np.float32)
    check_depth_matches_image(depth_m.shape[:2], mask.shape[:2])
    check_intrinsics(CameraIntrinsics(fx=fx, fy=fy, cx=cx, cy=cy))
    rows, cols = np.nonzero(mask)  # (N,), (N,) pixel coordinates inside the mask
    if rows.size == 0:
        return GraspPointResult(None, None, 0, 'the grasp mask is empty')
    pixel_uv = (float(cols.mean()), float(rows.mean()))
    depths = depth_m[rows, cols]  # (N,) metres, NaN where invalid
    depths = depths[np.isfinite(depths) & (depths > 0)]
    return grasp_point_from_depths(pixel_uv, depths, rows.size,
                                   CameraIntrinsics(fx=fx, fy=fy, cx=cx, cy=cy))


def check_intrinsics(k: CameraIntrinsics) -> None:
    """Raise ``ValueError`` unless the focal lengths are positive and finite."""
    if not (np.isfinite(k.fx) and np.isfinite(k.fy) and k.fx > 0 and k.fy > 0):
        raise ValueError(f'focal lengths must be positive and finite, got fx={k.fx}, '
                         f'fy={k.fy}; is the camera calibrated (CameraInfo.k non-zero)?')


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
