"""Local mean, min-max, cosine affinity and test-time calibration maps (docs/method.md)."""

from affordance_grounding.model.calibration import (
    cosine_affinity, local_mean_3x3, minmax_last_dim, minmax_per_map, upsample_and_normalize)
from affordance_grounding.model.grounding import compute_grounding_maps
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F


def _local_mean_loop(grid):
    """3x3 mean over the neighbours inside the grid, as an explicit Python loop."""
    rows, cols = grid.shape
    out = np.zeros_like(grid)
    for r in range(rows):
        for c in range(cols):
            values = [grid[rr, cc] for rr in range(r - 1, r + 2) for cc in range(c - 1, c + 2)
                      if 0 <= rr < rows and 0 <= cc < cols]
            out[r, c] = sum(values) / len(values)
    return out


def test_local_mean_3x3_averages_valid_neighbours_only():
    grid = torch.tensor([[1.0, 2.0, 4.0, 8.0],
                         [16.0, 32.0, 64.0, 128.0],
                         [256.0, 512.0, 1024.0, 2048.0],
                         [4096.0, 8192.0, 16384.0, 32768.0]], dtype=torch.float64)
    mean = local_mean_3x3(grid[None, None])[0, 0]
    assert mean[0, 0].item() == pytest.approx((1 + 2 + 16 + 32) / 4, abs=1e-6)
    assert mean[0, 1].item() == pytest.approx((1 + 2 + 4 + 16 + 32 + 64) / 6, abs=1e-6)
    assert mean[1, 0].item() == pytest.approx((1 + 2 + 16 + 32 + 256 + 512) / 6, abs=1e-6)
    assert mean[3, 3].item() == pytest.approx((1024 + 2048 + 16384 + 32768) / 4, abs=1e-6)
    assert mean[1, 1].item() == pytest.approx(
        (1 + 2 + 4 + 16 + 32 + 64 + 256 + 512 + 1024) / 9, abs=1e-6)


def test_local_mean_3x3_of_constant_map_is_constant():
    maps = torch.full((1, 2, 14, 14), 3.5)
    torch.testing.assert_close(local_mean_3x3(maps), maps, atol=1e-6, rtol=0)


def test_local_mean_3x3_matches_python_loop():
    maps = torch.randn(2, 3, 14, 14, generator=torch.Generator().manual_seed(0))
    actual = local_mean_3x3(maps).numpy()
    for n in range(2):
        for k in range(3):
            expected = _local_mean_loop(maps[n, k].numpy().astype(np.float64))
            np.testing.assert_allclose(actual[n, k], expected, atol=1e-6, rtol=0)


def test_minmax_per_map_normalises_each_map():
    maps = torch.tensor([[[[2.0, 4.0], [6.0, 10.0]], [[-1.0, 0.0], [1.0, 3.0]]]])
    expected = torch.tensor([[[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.25], [0.5, 1.0]]]])
    torch.testing.assert_close(minmax_per_map(maps), expected, atol=1e-7, rtol=0)


def test_cosine_affinity_matches_hand_cosines():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])  # (1, 3, 2)
    texts = torch.tensor([[2.0, 0.0], [0.0, -1.0]])  # (2, 2)
    root_half = 0.5 ** 0.5
    expected = torch.tensor([[[1.0, 0.0, root_half], [0.0, -1.0, -root_half]]])
    torch.testing.assert_close(cosine_affinity(patches, texts), expected, atol=1e-6, rtol=0)
    per_image = cosine_affinity(patches, texts[None])
    torch.testing.assert_close(per_image, expected, atol=1e-6, rtol=0)


def test_compute_grounding_maps_matches_hand_values():
    cam = torch.tensor([[[[1.0, -2.0, 3.0], [0.0, 4.0, -1.0], [2.0, 2.0, 6.0]]]])
    cosine = torch.tensor([[[[0.1, 0.3, 0.5], [0.2, 0.4, 0.1], [0.3, 0.3, 0.1]]]])
    affinity = torch.tensor([[[[0.0, 0.5, 1.0], [0.25, 0.75, 0.0], [0.5, 0.5, 0.0]]]])
    # 3x3 valid-neighbour means of cam, by hand.
    local = torch.tensor([[[[3.0 / 4, 5.0 / 6, 4.0 / 4],
                            [7.0 / 6, 15.0 / 9, 12.0 / 6],
                            [8.0 / 4, 13.0 / 6, 11.0 / 4]]]])
    maps = compute_grounding_maps(cam, cosine)
    torch.testing.assert_close(maps.cam, cam, atol=0, rtol=0)
    torch.testing.assert_close(maps.affinity, affinity, atol=1e-6, rtol=0)
    torch.testing.assert_close(maps.calibrated, affinity * cam, atol=1e-6, rtol=0)
    torch.testing.assert_close(maps.calibrated_local_mean, affinity * local, atol=1e-6, rtol=0)
    assert maps.select('none') is maps.cam
    assert maps.select('clip') is maps.calibrated
    assert maps.select('clip_local_mean') is maps.calibrated_local_mean


def test_grounding_maps_select_rejects_unknown_calibration():
    maps = compute_grounding_maps(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match='clip_local_mean'):
        maps.select('raw')


def test_compute_grounding_maps_constant_cosine_gives_zeros_not_nan():
    cam = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    cosine = torch.full((2, 3, 4, 4), 0.3)
    maps = compute_grounding_maps(cam, cosine)
    for tensor in (maps.affinity, maps.calibrated, maps.calibrated_local_mean):
        assert torch.isfinite(tensor).all()
        assert torch.equal(tensor.abs(), torch.zeros_like(tensor))


def test_upsample_and_normalize_matches_hand_bilinear():
    # align_corners=False samples source x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25,
    # clamped to the edge: weights give a = [0, 0.25, 0.75, 1] per axis, so the 4x4 output of
    # [[0, 1], [2, 3]] is a[j] + 2 a[i], ranging 0..3.
    maps = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    axis = torch.tensor([0.0, 0.25, 0.75, 1.0])
    expected = (axis[None, :] + 2.0 * axis[:, None]) / (3.0 + 1e-10)
    torch.testing.assert_close(upsample_and_normalize(maps, 4)[0, 0], expected,
                               atol=1e-7, rtol=0)


def test_upsample_and_normalize_matches_interpolate_and_minmax():
    maps = torch.randn(2, 3, 14, 14, generator=torch.Generator().manual_seed(2))
    up = F.interpolate(maps, size=(224, 224), mode='bilinear', align_corners=False)
    low = up.amin(dim=(2, 3), keepdim=True)
    high = up.amax(dim=(2, 3), keepdim=True)
    expected = (up - low) / (high - low + 1e-10)
    actual = upsample_and_normalize(maps, 224)
    assert actual.shape == (2, 3, 224, 224)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
    assert actual.min().item() >= 0.0
    assert actual.max().item() <= 1.0
    assert actual.amax(dim=(2, 3)).min().item() == pytest.approx(1.0, abs=1e-6)


def test_upsample_and_normalize_matches_cv2_resize():
    grid = np.random.default_rng(3).random((14, 14)).astype(np.float32)
    resized = cv2.resize(grid, (224, 224), interpolation=cv2.INTER_LINEAR)
    expected = (resized - resized.min()) / (resized.max() - resized.min() + 1e-10)
    actual = upsample_and_normalize(torch.from_numpy(grid)[None, None], 224)[0, 0].numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize('eps', [0.0, 1e-10, 1e-12, 1e-15])
def test_minmax_last_dim_is_the_reference_formula_and_zero_on_constant_rows(eps):
    """The project's one min-max: (x - min) / (max - min + eps) per row, 0 for a flat row."""
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(3, 4, 7, generator=generator)
    values[1, 2] = 0.25  # a constant row
    low = values.amin(dim=-1, keepdim=True)
    expected = (values - low) / (values.amax(dim=-1, keepdim=True) - low + eps)
    expected[1, 2] = 0.0
    torch.testing.assert_close(minmax_last_dim(values, eps), expected,
                               atol=0, rtol=0)
    as_float64 = minmax_last_dim(values.double(), eps)
    assert as_float64.dtype == torch.float64 and not torch.isnan(as_float64).any()
