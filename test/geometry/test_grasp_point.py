"""The depth rule and the grasp point of the 3D chain on synthetic depth images."""

from affordance_grounding.geometry.depth import (
    CameraIntrinsics, check_depth_matches_image, depth_to_metres, intrinsics_from_k)
from affordance_grounding.geometry.grasp3d import compute_3d_outputs
import numpy as np
import pytest

FX = FY = 500.0
CX, CY = 320.0, 240.0


def grasp_point(mask, depth, fx, fy, cx, cy, encoding='32FC1'):
    """Return the grasp point the node's 3D chain finds for a mask on a depth image."""
    k_matrix = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    heatmap = (np.asarray(mask) > 0).astype(np.float32)
    return compute_3d_outputs(np.asarray(depth), encoding, mask, heatmap, mask.shape[:2],
                              k_matrix, want_pose=False).point


def square_mask(center_uv=(400, 300), half=5, hw=(480, 640)):
    mask = np.zeros(hw, dtype=np.uint8)
    u, v = center_uv
    mask[v - half:v + half + 1, u - half:u + half + 1] = 255
    return mask


def test_depth_to_metres_reads_millimetres_and_marks_zero_invalid():
    metres = depth_to_metres(np.array([[1500, 0], [1, 65535]], dtype=np.uint16), '16UC1')
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres, [[1.5, np.nan], [0.001, 65.535]], rtol=1e-6)


def test_depth_to_metres_marks_nan_inf_zero_and_negative_invalid():
    depth = np.array([[np.nan, np.inf, -np.inf, 0.0, -1.0, 2.0]], dtype=np.float32)
    metres = depth_to_metres(depth, '32FC1')
    np.testing.assert_array_equal(np.isnan(metres), [[True] * 5 + [False]])
    assert metres[0, 5] == 2.0
    assert np.isinf(depth[0, 1])  # the input is not modified


def test_depth_to_metres_rejects_colour_encoding():
    with pytest.raises(ValueError, match="unsupported depth encoding 'rgb8'.*16UC1"):
        depth_to_metres(np.zeros((2, 2), np.uint8), 'rgb8')


def test_grasp_point_back_projects_mask_centroid_on_plane():
    depth_m = np.full((480, 640), 1.5, dtype=np.float32)
    result = grasp_point(square_mask(), depth_m, FX, FY, CX, CY)
    assert result.reason == ''
    assert result.pixel_uv == pytest.approx((400.0, 300.0), abs=1e-9)
    assert result.num_valid_depths == 121
    expected = ((400 - 320) * 1.5 / 500, (300 - 240) * 1.5 / 500, 1.5)  # (0.24, 0.18, 1.5)
    assert result.xyz_m == pytest.approx(expected, abs=1e-6)


def test_grasp_point_from_16uc1_millimetres():
    depth = np.full((480, 640), 1500, dtype=np.uint16)
    result = grasp_point(square_mask((200, 100)), depth, FX, FY, CX, CY, encoding='16UC1')
    assert result.xyz_m == pytest.approx((-0.36, -0.42, 1.5), abs=1e-6)


def test_grasp_point_ignores_nan_inf_and_zero_depths():
    depth = np.full((480, 640), 1.5, dtype=np.float32)
    depth[295:299, 395:406] = np.nan  # 44 pixels of the 121-pixel mask
    depth[299, 395:406] = np.inf
    depth[300, 395:406] = 0.0
    depth[301, 395:406] = -np.inf
    depth[0:240, :] = 9.0  # outside the mask: must not count
    result = grasp_point(square_mask(), depth_to_metres(depth, '32FC1'), FX, FY, CX, CY)
    assert result.num_valid_depths == 121 - 44 - 33
    assert result.xyz_m == pytest.approx((0.24, 0.18, 1.5), abs=1e-6)


def test_grasp_point_takes_median_depth():
    depth = np.full((480, 640), 2.0, dtype=np.float32)
    depth[295:298, 395:406] = 0.3  # 33 near outliers of 121: the median stays 2.0
    result = grasp_point(square_mask(), depth, FX, FY, CX, CY)
    assert result.xyz_m[2] == pytest.approx(2.0)


def test_grasp_point_reports_missing_depth():
    depth = np.full((480, 640), np.nan, dtype=np.float32)
    result = grasp_point(square_mask(), depth, FX, FY, CX, CY)
    assert result.xyz_m is None and result.num_valid_depths == 0
    assert 'no valid depth inside the grasp mask (121 pixels' in result.reason
    assert result.pixel_uv == pytest.approx((400.0, 300.0))


def test_grasp_point_reports_empty_mask():
    result = grasp_point(np.zeros((4, 4), np.uint8), np.ones((4, 4), np.float32),
                         FX, FY, CX, CY)
    assert result.xyz_m is None and result.pixel_uv is None
    assert result.reason == 'the grasp mask is empty'


def test_grasp_point_rejects_depth_colour_size_mismatch():
    check_depth_matches_image((480, 640), (480, 640))  # equal sizes pass
    with pytest.raises(ValueError, match='depth image is 320x240 but the colour image is '
                                         '640x480.*aligned'):
        grasp_point(square_mask(), np.ones((240, 320), np.float32), FX, FY, CX, CY)


@pytest.mark.parametrize('fx, fy', [(0.0, 500.0), (500.0, -1.0), (np.nan, 500.0)])
def test_grasp_point_rejects_bad_focal_lengths(fx, fy):
    with pytest.raises(ValueError, match='focal lengths must be positive'):
        grasp_point(square_mask(), np.ones((480, 640), np.float32), fx, fy, CX, CY)


def test_intrinsics_from_k_reads_row_major_matrix():
    k = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    assert intrinsics_from_k(k) == CameraIntrinsics(500.0, 510.0, 320.0, 240.0)
    with pytest.raises(ValueError, match='9 row-major entries, got 4'):
        intrinsics_from_k([1.0, 2.0, 3.0, 4.0])
