"""Region cloud and grasp pose: known answers on ray-cast synthetic depth (VGA pinhole)."""

from affordance_grounding.geometry.depth import CameraIntrinsics, depth_to_metres
from affordance_grounding.geometry.grasp3d import compute_3d_outputs
from affordance_grounding.geometry.grasp_pose import (
    DEGENERATE, estimate_grasp_pose, rotation_to_quaternion, TOO_FEW_POINTS)
from affordance_grounding.geometry.region_cloud import back_project_region
import cv2
import numpy as np
import pytest

HEIGHT, WIDTH = 480, 640
K = CameraIntrinsics(fx=600.0, fy=590.0, cx=319.5, cy=241.0)
K_MATRIX = [K.fx, 0.0, K.cx, 0.0, K.fy, K.cy, 0.0, 0.0, 1.0]


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def angle_deg(a, b) -> float:
    """Angle between two directions, in degrees."""
    return float(np.degrees(np.arccos(np.clip(abs(unit(a) @ unit(b)), 0.0, 1.0))))


def pixel_rays() -> np.ndarray:
    """(H, W, 3) ray directions with z = 1, so a ray parameter t is the depth."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    return np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], axis=-1)


def render_plane(normal, point) -> np.ndarray:
    """(H, W) float64 depth in metres of the plane through ``point`` with ``normal``."""
    normal = unit(normal)
    return (normal @ np.asarray(point)) / (pixel_rays() @ normal)


def render_cylinder(centre, axis, radius, length):
    """Depth of a finite cylinder's near surface and the mask of the pixels it covers."""
    axis, centre = unit(axis), np.asarray(centre, dtype=np.float64)
    rays = pixel_rays()
    across = rays - (rays @ axis)[..., None] * axis  # (H, W, 3)
    centre_across = centre - (centre @ axis) * axis
    a = (across ** 2).sum(-1)
    b = -2.0 * (across @ centre_across)
    c = centre_across @ centre_across - radius ** 2
    discriminant = b ** 2 - 4 * a * c
    with np.errstate(invalid='ignore'):
        t = (-b - np.sqrt(discriminant)) / (2 * a)  # the nearer intersection
    along = (t[..., None] * rays - centre) @ axis
    hit = (discriminant > 0) & (np.abs(along) <= length / 2)
    return np.where(hit, t, np.nan), hit


def ellipse_mask(centre=(300, 250), axes=(120, 70), angle=20.0) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 255, -1)
    return mask


def to_16uc1(depth_m: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(depth_m), np.round(depth_m * 1000.0), 0).astype(np.uint16)


def pose_of(mask, depth, encoding='32FC1', heatmap=None):
    heatmap = np.ones(mask.shape, np.float32) if heatmap is None else heatmap
    cloud = back_project_region(mask, depth, encoding, heatmap, K)
    return cloud, estimate_grasp_pose(cloud.points)


PLANE_NORMAL = unit([0.35, -0.25, -1.0])  # faces the camera, tilted about 23 degrees
PLANE_POINT = np.array([0.03, 0.02, 0.9])


def noisy_tilted_plane(seed=0) -> np.ndarray:
    """Render the tilted plane, 1 mm depth noise, 3% of pixels on a 2.5 m background."""
    rng = np.random.default_rng(seed)
    depth = render_plane(PLANE_NORMAL, PLANE_POINT) + rng.normal(0, 0.001, (HEIGHT, WIDTH))
    depth[rng.random((HEIGHT, WIDTH)) < 0.03] = 2.5
    return depth.astype(np.float32)


def check_frame(rotation: np.ndarray) -> None:
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-9)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-9)  # right-handed


def test_tilted_plane_normal_is_recovered_within_two_degrees():
    mask = ellipse_mask()
    cloud, result = pose_of(mask, noisy_tilted_plane())
    pose = result.pose
    assert pose is not None, result
    check_frame(pose.rotation)
    # z approaches the surface: the negative of the camera-facing normal.
    assert angle_deg(pose.rotation[:, 2], -PLANE_NORMAL) < 2.0
    assert pose.rotation[:, 2] @ -PLANE_NORMAL > 0
    # The centre lies on the true plane and inside the region.
    assert abs((pose.position - PLANE_POINT) @ PLANE_NORMAL) < 0.002
    u = K.fx * pose.position[0] / pose.position[2] + K.cx
    v = K.fy * pose.position[1] / pose.position[2] + K.cy
    assert mask[int(round(v)), int(round(u))] == 255
    assert pose.inlier_fraction < 0.99  # the background jumps were trimmed


def test_plane_pose_x_follows_the_long_axis_of_the_region():
    plane = render_plane([0.0, 0.0, -1.0], [0.0, 0.0, 0.8]).astype(np.float32)
    _, result = pose_of(ellipse_mask(axes=(150, 40), angle=30.0), plane)
    x_axis = result.pose.rotation[:, 0]
    # cv2.ellipse angle is clockwise on screen, i.e. towards +y (down) in the optical frame.
    expected = [np.cos(np.radians(30.0)), np.sin(np.radians(30.0)), 0.0]
    assert angle_deg(x_axis, expected) < 1.0
    assert x_axis[0] > 0  # signed into the image's right half
    np.testing.assert_allclose(result.pose.rotation[:, 2], [0, 0, 1], atol=1e-6)
    length, width = result.pose.patch_size
    assert length > 2.5 * width


def test_cylinder_principal_axis_runs_along_the_cylinder():
    axis = unit([np.cos(np.radians(35.0)), np.sin(np.radians(35.0)), 0.15])
    centre = np.array([0.02, -0.01, 0.7])
    depth, hit = render_cylinder(centre, axis, radius=0.025, length=0.22)
    mask = hit.astype(np.uint8) * 255
    _, result = pose_of(mask, depth.astype(np.float32))
    pose = result.pose
    assert pose is not None, result
    check_frame(pose.rotation)
    assert angle_deg(pose.rotation[:, 0], axis) < 2.0
    # The approach is across the axis, away from the camera, towards the axis line.
    assert abs(pose.rotation[:, 2] @ axis) < np.sin(np.radians(2.0))
    to_axis = centre - pose.position
    assert pose.rotation[:, 2] @ to_axis > 0


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1'])
def test_region_half_out_of_depth_range_uses_the_valid_half(encoding):
    mask = ellipse_mask(centre=(320, 240), axes=(140, 90), angle=0.0)
    depth_m = noisy_tilted_plane(seed=1)
    right = np.zeros_like(mask, bool)
    right[:, 320:] = True
    if encoding == '16UC1':
        depth = to_16uc1(depth_m)
        depth[right] = 0  # no return
    else:
        depth = depth_m.copy()
        depth[right] = np.inf  # beyond the sensor's range (REP-118)
    cloud, result = pose_of(mask, depth, encoding)
    left_pixels = int(((mask > 0) & ~right).sum())
    assert len(cloud.points) <= left_pixels and len(cloud.points) > 0.9 * left_pixels
    assert cloud.num_mask_pixels == int((mask > 0).sum())
    assert np.isfinite(cloud.points).all()
    pose = result.pose
    assert angle_deg(pose.rotation[:, 2], -PLANE_NORMAL) < 2.0
    u = K.fx * pose.position[0] / pose.position[2] + K.cx
    assert u < 320  # the centre of what was seen, not of the whole mask


def test_all_nan_depth_gives_no_pose_and_says_why():
    mask = ellipse_mask()
    depth = np.full((HEIGHT, WIDTH), np.nan, np.float32)
    cloud, result = pose_of(mask, depth)
    assert len(cloud.points) == 0
    assert result.pose is None and result.reason == TOO_FEW_POINTS
    assert '0 points' in result.detail


def test_a_thin_line_is_degenerate():
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.line(mask, (100, 100), (500, 300), 255, 1)
    plane = render_plane(PLANE_NORMAL, PLANE_POINT).astype(np.float32)
    _, result = pose_of(mask, plane)
    assert result.pose is None and result.reason == DEGENERATE
    assert 'line' in result.detail


def test_one_repeated_point_is_degenerate_not_nan():
    result = estimate_grasp_pose(np.tile([[0.1, 0.2, 0.5]], (200, 1)).astype(np.float32))
    assert result.pose is None and result.reason == DEGENERATE


def test_cloud_intensity_is_the_heatmap_value_of_each_pixel():
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[10:12, 20:23] = 255
    heatmap = np.zeros((HEIGHT, WIDTH), np.float32)
    heatmap[10:12, 20:23] = [[0.5, 0.6, 0.7], [0.8, 0.9, 1.0]]
    depth = np.full((HEIGHT, WIDTH), 2000, np.uint16)
    cloud = back_project_region(mask, depth, '16UC1', heatmap, K)
    np.testing.assert_allclose(cloud.intensity, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(cloud.points[:, 2], 2.0)
    np.testing.assert_allclose(cloud.points[0, :2], [(20 - K.cx) * 2 / K.fx,
                                                     (10 - K.cy) * 2 / K.fy], rtol=1e-6)
    assert cloud.points.dtype == np.float32 and cloud.intensity.dtype == np.float32


def test_unknown_depth_encoding_is_rejected():
    with pytest.raises(ValueError, match='unsupported depth encoding'):
        back_project_region(ellipse_mask(), np.ones((HEIGHT, WIDTH), np.uint8), 'mono8',
                            np.ones((HEIGHT, WIDTH), np.float32), K)


@pytest.mark.parametrize('rotation', [
    np.eye(3),
    np.diag([1.0, -1.0, -1.0]),  # 180 degrees about x
    np.diag([-1.0, 1.0, -1.0]),  # about y
    np.diag([-1.0, -1.0, 1.0]),  # about z
    cv2.Rodrigues(np.array([0.3, -1.2, 0.7]))[0],
])
def test_quaternion_rebuilds_the_rotation(rotation):
    x, y, z, w = rotation_to_quaternion(rotation)
    rebuilt = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    np.testing.assert_allclose(rebuilt, rotation, atol=1e-9)
    assert w >= 0


def test_chain_point_is_the_mask_centroid_at_the_median_valid_depth():
    mask = ellipse_mask()
    depth = to_16uc1(noisy_tilted_plane())
    outputs = compute_3d_outputs(depth, '16UC1', mask, np.ones(mask.shape, np.float32),
                                 (HEIGHT, WIDTH), K_MATRIX)
    rows, cols = np.nonzero(mask)  # (N,) pixels of the region
    metres = depth_to_metres(depth, '16UC1')[rows, cols]
    z = float(np.median(metres[np.isfinite(metres)]))
    u, v = cols.mean(), rows.mean()
    expected = ((u - K.cx) * z / K.fx, (v - K.cy) * z / K.fy, z)
    assert outputs.point.xyz_m == pytest.approx(expected, abs=1e-9)
    assert outputs.pose.pose is not None
    assert set(outputs.timings_s) == {'grasp_point', 'grasp_pose'}


def test_chain_brings_model_resolution_maps_back_to_camera_pixels():
    heatmap = np.zeros((224, 224), np.float32)
    heatmap[80:150, 60:170] = 0.9
    mask = (heatmap > 0.5).astype(np.uint8) * 255
    depth = np.full((HEIGHT, WIDTH), 1.2, np.float32)
    outputs = compute_3d_outputs(depth, '32FC1', mask, heatmap, (HEIGHT, WIDTH), K_MATRIX,
                                 want_pose=False)
    full_mask = cv2.resize(mask, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST)
    assert len(outputs.cloud.points) == int((full_mask > 0).sum())
    assert outputs.pose.pose is None and 'grasp_pose' not in outputs.timings_s


def test_chain_rejects_depth_of_another_size_and_uncalibrated_cameras():
    mask = ellipse_mask()
    with pytest.raises(ValueError, match='aligned to the colour camera'):
        compute_3d_outputs(np.ones((240, 320), np.float32), '32FC1', mask, mask,
                           (HEIGHT, WIDTH), K_MATRIX)
    with pytest.raises(ValueError, match='calibrated'):
        compute_3d_outputs(np.ones((HEIGHT, WIDTH), np.float32), '32FC1', mask, mask,
                           (HEIGHT, WIDTH), [0.0] * 9)


@pytest.mark.parametrize('seed', range(20))
def test_pose_is_finite_or_absent_on_arbitrary_points(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(0, 400))
    scale = 10.0 ** rng.uniform(-6, 3, size=3)  # from micrometre flat to kilometre spread
    points = (rng.normal(size=(count, 3)) * scale + [0, 0, 1]).astype(np.float32)
    result = estimate_grasp_pose(points)
    if result.pose is None:
        assert result.reason in (TOO_FEW_POINTS, DEGENERATE) and result.detail
    else:
        pose = result.pose
        values = np.concatenate([pose.position, pose.rotation.ravel(), pose.patch_center,
                                 pose.quaternion_xyzw, pose.patch_size])
        assert np.isfinite(values).all()
        check_frame(pose.rotation)
