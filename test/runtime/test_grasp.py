"""Grasp mask and 3D grasp point on hand-built maps and synthetic depth images."""

from affordance_grounding.runtime.grasp import (
    CameraIntrinsics, check_depth_matches_image, compute_grasp_mask, compute_grasp_point,
    depth_to_metres, intrinsics_from_k)
import cv2
import numpy as np
import pytest

FX = FY = 500.0
CX, CY = 320.0, 240.0


def two_blob_heatmap():
    """6x6 map: a 4-pixel blob at 0.9, a 3-pixel blob at 0.6 and one pixel at 0.4."""
    heatmap = np.zeros((6, 6), dtype=np.float32)
    heatmap[0:2, 0:2] = 0.9
    heatmap[4, 3:6] = 0.6
    heatmap[0, 5] = 0.4
    return heatmap


def square_mask(center_uv=(400, 300), half=5, hw=(480, 640)):
    mask = np.zeros(hw, dtype=np.uint8)
    u, v = center_uv
    mask[v - half:v + half + 1, u - half:u + half + 1] = 255
    return mask


def test_compute_grasp_mask_keeps_largest_component():
    mask = compute_grasp_mask(two_blob_heatmap(), 0.5)
    expected = np.zeros((6, 6), dtype=np.uint8)
    expected[0:2, 0:2] = 255
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, expected)


def test_compute_grasp_mask_keeps_every_component_when_asked():
    mask = compute_grasp_mask(two_blob_heatmap(), 0.5, largest_component=False)
    assert set(np.unique(mask)) == {0, 255}
    assert int((mask == 255).sum()) == 7
    assert mask[0, 5] == 0  # 0.4 is below the threshold


def test_compute_grasp_mask_threshold_is_inclusive_and_skips_nan():
    heatmap = np.array([[0.5, 0.49, np.nan]], dtype=np.float32)
    np.testing.assert_array_equal(compute_grasp_mask(heatmap, 0.5, False), [[255, 0, 0]])


def test_compute_grasp_mask_joins_diagonal_neighbours():
    heatmap = np.pad(np.eye(3, dtype=np.float32), ((0, 0), (0, 3)))  # (3, 6) diagonal line
    mask = compute_grasp_mask(heatmap, 0.5)
    assert int((mask == 255).sum()) == 3  # 8-connectivity: the diagonal is one region


def test_compute_grasp_mask_is_empty_when_nothing_passes():
    mask = compute_grasp_mask(np.full((4, 5), 0.2, dtype=np.float32), 0.5)
    assert mask.shape == (4, 5) and mask.dtype == np.uint8 and not mask.any()


def test_compute_grasp_mask_rejects_non_2d_map():
    with pytest.raises(ValueError, match=r'heatmap must be \(H, W\)'):
        compute_grasp_mask(np.zeros((2, 2, 1)), 0.5)


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


def test_compute_grasp_point_back_projects_mask_centroid_on_plane():
    depth_m = np.full((480, 640), 1.5, dtype=np.float32)
    result = compute_grasp_point(square_mask(), depth_m, FX, FY, CX, CY)
    assert result.reason == ''
    assert result.pixel_uv == pytest.approx((400.0, 300.0), abs=1e-9)
    assert result.num_valid_depths == 121
    expected = ((400 - 320) * 1.5 / 500, (300 - 240) * 1.5 / 500, 1.5)  # (0.24, 0.18, 1.5)
    assert result.xyz_m == pytest.approx(expected, abs=1e-6)


def test_compute_grasp_point_from_16uc1_millimetres():
    depth = np.full((480, 640), 1500, dtype=np.uint16)
    result = compute_grasp_point(square_mask((200, 100)), depth_to_metres(depth, '16UC1'),
                                 FX, FY, CX, CY)
    assert result.xyz_m == pytest.approx((-0.36, -0.42, 1.5), abs=1e-6)


def test_compute_grasp_point_ignores_nan_inf_and_zero_depths():
    depth = np.full((480, 640), 1.5, dtype=np.float32)
    depth[295:299, 395:406] = np.nan  # 44 pixels of the 121-pixel mask
    depth[299, 395:406] = np.inf
    depth[300, 395:406] = 0.0
    depth[301, 395:406] = -np.inf
    depth[0:240, :] = 9.0  # outside the mask: must not count
    result = compute_grasp_point(square_mask(), depth_to_metres(depth, '32FC1'), FX, FY, CX, CY)
    assert result.num_valid_depths == 121 - 44 - 33
    assert result.xyz_m == pytest.approx((0.24, 0.18, 1.5), abs=1e-6)


def test_compute_grasp_point_takes_median_depth():
    depth = np.full((480, 640), 2.0, dtype=np.float32)
    depth[295:298, 395:406] = 0.3  # 33 near outliers of 121: the median stays 2.0
    result = compute_grasp_point(square_mask(), depth, FX, FY, CX, CY)
    assert result.xyz_m[2] == pytest.approx(2.0)


def test_compute_grasp_point_reports_missing_depth():
    depth = np.full((480, 640), np.nan, dtype=np.float32)
    result = compute_grasp_point(square_mask(), depth, FX, FY, CX, CY)
    assert result.xyz_m is None and result.num_valid_depths == 0
    assert 'no valid depth inside the grasp mask (121 pixels' in result.reason
    assert result.pixel_uv == pytest.approx((400.0, 300.0))


def test_compute_grasp_point_reports_empty_mask():
    result = compute_grasp_point(np.zeros((4, 4), np.uint8), np.ones((4, 4), np.float32),
                                 FX, FY, CX, CY)
    assert result.xyz_m is None and result.pixel_uv is None
    assert result.reason == 'the grasp mask is empty'


def test_compute_grasp_point_rejects_depth_colour_size_mismatch():
    check_depth_matches_image((480, 640), (480, 640))  # equal sizes pass
    with pytest.raises(ValueError, match='depth image is 320x240 but the colour image is '
                                         '640x480.*aligned'):
        compute_grasp_point(square_mask(), np.ones((240, 320), np.float32), FX, FY, CX, CY)


@pytest.mark.parametrize('fx, fy', [(0.0, 500.0), (500.0, -1.0), (np.nan, 500.0)])
def test_compute_grasp_point_rejects_bad_focal_lengths(fx, fy):
    with pytest.raises(ValueError, match='focal lengths must be positive'):
        compute_grasp_point(square_mask(), np.ones((480, 640), np.float32), fx, fy, CX, CY)


def test_intrinsics_from_k_reads_row_major_matrix():
    k = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    assert intrinsics_from_k(k) == CameraIntrinsics(500.0, 510.0, 320.0, 240.0)
    with pytest.raises(ValueError, match='9 row-major entries, got 4'):
        intrinsics_from_k([1.0, 2.0, 3.0, 4.0])


def full_image_grasp_mask(heatmap, threshold):
    """Threshold, then keep the largest region of a labelling of the whole image (reference).

    The straightforward implementation ``compute_grasp_mask`` replaced (it labels only the
    bounding box of the passing pixels and counts areas with a histogram); the results must
    be identical, ties included.
    """
    with np.errstate(invalid='ignore'):
        passed = (np.asarray(heatmap) >= threshold).astype(np.uint8)
    if passed.any():
        count, labels, stats, _ = cv2.connectedComponentsWithStats(passed, connectivity=8)
        passed = (labels == 1 + int(np.argmax(stats[1:count, cv2.CC_STAT_AREA]))).astype(np.uint8)
    return passed * np.uint8(255)


def reference_maps():
    """Return maps that exercise the fast path: camera-size noise, odd sizes, tied regions."""
    rng = np.random.default_rng(7)
    maps = []
    for _ in range(3):  # untrained-model-like: 14x14 patches upsampled, many regions
        patches = rng.random((14, 14)).astype(np.float32)
        maps.append(cv2.resize(cv2.resize(patches, (224, 224), interpolation=cv2.INTER_CUBIC),
                               (1280, 720), interpolation=cv2.INTER_LINEAR))
    for _ in range(40):  # small maps of odd and even sizes, pixel noise
        height, width = rng.integers(1, 40, size=2)
        maps.append(rng.random((height, width)))
    for _ in range(40):  # equal-area squares at odd and even offsets: ties
        heatmap = np.zeros((31, 37), dtype=np.float32)
        for top, left in rng.integers(0, 28, size=(3, 2)):
            heatmap[top:top + 3, left:left + 3] = 1.0
        maps.append(heatmap)
    return maps


def test_compute_grasp_mask_equals_a_full_image_labelling():
    for heatmap in reference_maps():
        for threshold in (0.3, 0.5, 0.8):
            np.testing.assert_array_equal(compute_grasp_mask(heatmap, threshold),
                                          full_image_grasp_mask(heatmap, threshold))


def test_compute_grasp_mask_keeps_a_far_largest_region_outside_a_small_crop():
    heatmap = np.zeros((200, 300), dtype=np.float32)
    heatmap[3, 5] = 1.0  # a lone pixel near the top-left corner
    heatmap[150:190, 240:290] = 0.8  # the largest region, far away
    heatmap[100:102, 100:102] = 0.9
    mask = compute_grasp_mask(heatmap, 0.5)
    assert int(np.count_nonzero(mask)) == 40 * 50 and mask[160, 250] == 255


def test_compute_grasp_mask_counts_more_regions_than_uint16_labels_hold():
    heatmap = np.zeros((720, 1280), dtype=np.float32)
    heatmap[::2, ::2] = 1.0  # 230400 isolated pixels, all tied at area 1
    heatmap[101, 201] = 1.0  # joins its 4 diagonal neighbours: one region of 5 pixels wins
    mask = compute_grasp_mask(heatmap, 0.5)
    np.testing.assert_array_equal(mask, full_image_grasp_mask(heatmap, 0.5))
    assert int(np.count_nonzero(mask)) == 5 and mask[100, 200] == mask[102, 202] == 255


def test_compute_grasp_mask_thresholds_other_dtypes_like_numpy():
    heatmap = np.array([[0.25, 0.5, 0.75, np.nan]])
    for dtype in (np.float16, np.float32, np.float64):
        np.testing.assert_array_equal(compute_grasp_mask(heatmap.astype(dtype), 0.5, False),
                                      [[0, 255, 255, 0]])
    np.testing.assert_array_equal(compute_grasp_mask(np.array([[0, 1, 2]]), 1, False),
                                  [[0, 255, 255]])
    assert not compute_grasp_mask(heatmap, np.inf, False).any()
    np.testing.assert_array_equal(compute_grasp_mask(heatmap, -np.inf, False),
                                  [[255, 255, 255, 0]])
