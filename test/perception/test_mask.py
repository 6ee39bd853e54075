"""The grasp mask on hand-built maps, against a full-image labelling."""

from affordance_grounding.perception.mask import compute_grasp_mask
import cv2
import numpy as np
import pytest


def two_blob_heatmap():
    """6x6 map: a 4-pixel blob at 0.9, a 3-pixel blob at 0.6 and one pixel at 0.4."""
    heatmap = np.zeros((6, 6), dtype=np.float32)
    heatmap[0:2, 0:2] = 0.9
    heatmap[4, 3:6] = 0.6
    heatmap[0, 5] = 0.4
    return heatmap


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
