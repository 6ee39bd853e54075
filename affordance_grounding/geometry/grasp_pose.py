"""A 6-DoF grasp pose from the 3D points of the grasp region (no ROS needed).

Convention (see docs/ros_interface.md), all in the camera optical frame of the colour image
(REP-103 optical frame: x right, y down, z forward; REP-118 depth):

* position: the coordinate-wise median of the plane-fit inliers, projected onto the plane;
* z (approach): the negative of the surface normal, the normal being oriented towards the
  camera first, so z points from the camera side *into* the surface, the direction a gripper
  moves to make contact;
* x: the region's principal (longest) axis in that plane, signed to point into the image's
  right half (x . x_camera >= 0; ties go to y down);
* y = z cross x, so (x, y, z) is right-handed.

A parallel gripper whose fingers close along its y axis (the Franka hand's convention: z
approach, fingers sliding along y) thus closes ACROSS the region's long axis, like a hand
around a handle. A gripper that closes along its x axis should rotate this pose 90 degrees
about z.

Robustness, in two steps. A depth gate first drops points whose depth is far from the
region's median depth (4 robust sigmas from the MAD, at least 1 cm): a mask that bleeds over an
object's edge picks up background or foreground pixels metres away, which would dominate any
least-squares fit. Then the plane is a least-squares fit (eigenvectors of the 3x3 covariance,
the cheap form of PCA) refined by trimming: points farther from the plane than 3 robust sigmas
are dropped and the plane refitted, twice.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

MIN_POSE_POINTS = 30
MAX_FIT_POINTS = 1024  # a strided subsample bounds the fit cost on large VGA regions
DEPTH_GATE_SIGMAS = 4.0
MIN_DEPTH_GATE_M = 0.01
TRIM_ROUNDS = 2
TRIM_SIGMAS = 3.0
MIN_TRIM_DISTANCE_M = 0.002  # never trim tighter than sensor noise
MIN_WIDTH_M = 0.002  # narrower than this across the long axis: a line, not a surface
MIN_WIDTH_RATIO = 0.05  # width / length below this: a line, not a surface
PATCH_PERCENTILES = (5.0, 95.0)

# Reasons for "no pose" (diagnostics problem kinds: grasp_pose_<reason>).
TOO_FEW_POINTS = 'too_few_points'
DEGENERATE = 'degenerate'


@dataclass(frozen=True)
class GraspPose:
    """A grasp pose and the plane patch it was fitted on.

    Attributes:
        position: (3,) metres, camera optical frame.
        rotation: (3, 3) columns x, y, z of the grasp frame in the camera optical frame.
        quaternion_xyzw: The rotation as a unit quaternion (x, y, z, w), w >= 0.
        patch_center: (3,) centre of the plane patch (5th-95th percentile box of the inliers).
        patch_size: (length along x, width along y) of that box in metres.
        num_points: Points given.
        inlier_fraction: Share of the (subsampled) points that the final plane was fitted on.
    """

    position: np.ndarray
    rotation: np.ndarray
    quaternion_xyzw: Tuple[float, float, float, float]
    patch_center: np.ndarray
    patch_size: Tuple[float, float]
    num_points: int
    inlier_fraction: float


@dataclass(frozen=True)
class GraspPoseResult:
    """Outcome of :func:`estimate_grasp_pose`: a pose, or ``None`` with a reason."""

    pose: Optional[GraspPose]
    reason: str = ''
    detail: str = ''


def rotation_to_quaternion(rotation: np.ndarray) -> Tuple[float, float, float, float]:
    """Rotation matrix -> unit quaternion (x, y, z, w) with w >= 0.

    Shepperd's method, written here because the runtime does not depend on scipy or tf
    transformations for one 3x3 conversion.
    """
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0.0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s
    elif m[0, 0] >= m[1, 1] and m[0, 0] >= m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s
    elif m[1, 1] >= m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s
    quaternion = np.array(q) / np.linalg.norm(q)
    if quaternion[3] < 0:
        quaternion = -quaternion
    return tuple(float(value) for value in quaternion)


def robust_sigma(values: np.ndarray, median: Optional[float] = None) -> float:
    """Estimate a standard deviation from the median absolute deviation (outlier-proof)."""
    median = np.median(values) if median is None else median
    return 1.4826 * float(np.median(np.abs(values - median)))


def gate_depth(points: np.ndarray) -> np.ndarray:
    """Boolean (N,) mask of the points whose depth is near the region's median depth."""
    depth = points[:, 2]
    median = float(np.median(depth))
    limit = max(DEPTH_GATE_SIGMAS * robust_sigma(depth, median), MIN_DEPTH_GATE_M)
    return np.abs(depth - median) <= limit


def fit_plane(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Trimmed least-squares plane of (N, 3) float64 points.

    Returns:
        ``(centroid (3,), eigenvalues (3,) ascending, eigenvectors (3, 3) as columns,
        inlier mask (N,))``; the first eigenvector is the plane normal.
    """
    inliers = np.ones(len(points), bool)
    chosen = points
    for round_ in range(TRIM_ROUNDS + 1):
        centroid = chosen.mean(axis=0)
        # E[p p^T] - c c^T: no centred copy; float64 keeps the cancellation harmless at
        # metre-scale coordinates and millimetre-scale spreads.
        covariance = chosen.T @ chosen / len(chosen) - np.outer(centroid, centroid)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        if round_ == TRIM_ROUNDS:
            break
        normal = eigenvectors[:, 0]
        residual = points @ normal - centroid @ normal  # (N,) signed distance
        limit = max(TRIM_SIGMAS * robust_sigma(residual[inliers]), MIN_TRIM_DISTANCE_M)
        keep = np.abs(residual) <= limit
        kept = int(np.count_nonzero(keep))
        if kept < MIN_POSE_POINTS or np.array_equal(keep, inliers):
            break
        inliers, chosen = keep, points[keep]
    return centroid, np.maximum(eigenvalues, 0.0), eigenvectors, inliers


def orient_axes(normal: np.ndarray, major: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Apply the module's axis convention; returns the (3, 3) rotation, columns x, y, z."""
    if normal @ -centroid < 0:  # make the normal face the camera (at the origin)
        normal = -normal
    z = -normal
    x = major - (major @ z) * z
    x /= np.linalg.norm(x)
    if x[0] < 0 or (x[0] == 0 and x[1] < 0):
        x = -x
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def estimate_grasp_pose(points: np.ndarray) -> GraspPoseResult:
    """Fit the grasp pose of the module docstring to a region's surface points.

    Args:
        points: (N, 3) finite points in metres in the camera optical frame.

    Returns:
        The pose, or ``pose=None`` with reason :data:`TOO_FEW_POINTS` or :data:`DEGENERATE`
        (a line, a single point) and a one-line detail. Never a pose with NaN.
    """
    points = np.asarray(points)
    if len(points) < MIN_POSE_POINTS:
        return GraspPoseResult(None, TOO_FEW_POINTS, f'{len(points)} points with valid depth '
                               f'in the grasp region (< {MIN_POSE_POINTS})')
    stride = -(-len(points) // MAX_FIT_POINTS)  # ceil division
    sampled = points[::stride].astype(np.float64)  # (M, 3)
    fit = sampled[gate_depth(sampled)]
    if len(fit) < MIN_POSE_POINTS:
        return GraspPoseResult(None, TOO_FEW_POINTS, f'{len(fit)} points near the median depth '
                               f'of the grasp region (< {MIN_POSE_POINTS})')
    centroid, eigenvalues, eigenvectors, inliers = fit_plane(fit)
    length, width = np.sqrt(eigenvalues[2]), np.sqrt(eigenvalues[1])  # RMS spreads
    if width < MIN_WIDTH_M or width < MIN_WIDTH_RATIO * length:
        return GraspPoseResult(None, DEGENERATE, f'the region is a line, not a surface '
                               f'(RMS length {length * 1e3:.1f} mm, width {width * 1e3:.2f} mm)')
    rotation = orient_axes(eigenvectors[:, 0], eigenvectors[:, 2], centroid)
    chosen = fit[inliers]
    median = np.median(chosen, axis=0)
    position = median - ((median - centroid) @ rotation[:, 2]) * rotation[:, 2]
    in_plane = (chosen - position) @ rotation[:, :2]  # (K, 2) coordinates along x and y
    low, high = np.percentile(in_plane, PATCH_PERCENTILES, axis=0)  # (2,), (2,)
    patch_center = position + rotation[:, :2] @ ((low + high) / 2)
    pose = GraspPose(position=position, rotation=rotation,
                     quaternion_xyzw=rotation_to_quaternion(rotation),
                     patch_center=patch_center,
                     patch_size=(float(high[0] - low[0]), float(high[1] - low[1])),
                     num_points=int(len(points)),
                     inlier_fraction=float(inliers.sum() / len(sampled)))
    values = np.concatenate([position, rotation.ravel(), patch_center, pose.quaternion_xyzw])
    if not np.all(np.isfinite(values)):
        return GraspPoseResult(None, DEGENERATE, 'the plane fit produced non-finite numbers')
    return GraspPoseResult(pose)
