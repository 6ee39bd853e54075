"""Tests for training.metrics on hand-computed arrays (docs/method.md, "Metrics")."""

import math
import warnings

import numpy as np
import pytest
import torch

from training import metrics

SIZE = 224
EPS = 1e-12


def _square_map(top: int, left: int, side: int, dtype=np.float64) -> np.ndarray:
    """Return a SIZE x SIZE map that is 1 on a square and 0 elsewhere."""
    square = np.zeros((SIZE, SIZE), dtype=dtype)
    square[top:top + side, left:left + side] = 1
    return square


def _nss_with_python_loops(pred: np.ndarray, gt: np.ndarray) -> float:
    """Compute NSS with the binarisation and sums as explicit per-pixel Python loops."""
    pred = pred / 255.0
    gt = gt / 255.0
    pred_z = (pred - pred.mean()) / pred.std()
    gt_min, gt_max = float(gt.min()), float(gt.max())
    numerator = 0.0
    denominator = 0.0
    height, width = gt.shape
    for row in range(height):
        for col in range(width):
            fixation = 1.0 if (gt[row, col] - gt_min) / (gt_max - gt_min + EPS) > 0.1 else 0.0
            numerator += float(pred_z[row, col]) * fixation
            denominator += fixation + EPS
    return numerator / denominator


def test_kld_sim_identical_maps_are_zero_and_one():
    """Identical maps: KLD is 0 and SIM is 1 up to float32 rounding and the epsilons."""
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.05, 1.0, (SIZE, SIZE))
    pred = gt.astype(np.float32)
    # Only float32 rounding of pred (~6e-8 relative) and the 1e-12 terms separate p from g.
    assert metrics.kld(pred, gt) == pytest.approx(0.0, abs=1e-6)
    assert metrics.sim(pred, gt) == pytest.approx(1.0, abs=1e-6)


def test_kld_sim_uniform_prediction_against_square_blob():
    """Uniform prediction vs a square covering 1/16: KLD = ln 16, SIM = 1/16."""
    side = 56  # the square covers 1/16 of the 224 x 224 image
    pred = np.ones((SIZE, SIZE), dtype=np.float32)
    gt = _square_map(84, 30, side)
    # p = 1/N everywhere, g = 1/k on the square: KLD = sum_k (1/k) ln(N/k) = ln(N/k) = ln 16.
    assert metrics.kld(pred, gt) == pytest.approx(math.log(16.0), rel=1e-6)
    # min(1/N, 1/k) = 1/N on the k square pixels and 0 elsewhere: SIM = k/N.
    assert metrics.sim(pred, gt) == pytest.approx(1.0 / 16.0, rel=1e-6)


def test_kld_two_level_blob_matches_closed_form():
    """Uniform prediction vs a two-level GT matches the analytic KLD."""
    num_pixels = SIZE * SIZE
    pred = np.ones((SIZE, SIZE), dtype=np.float32)
    gt = np.zeros((SIZE, SIZE))
    gt[:10, :10] = 1.0  # 100 pixels at 1
    gt[100:110, :30] = 0.5  # 300 pixels at 0.5
    total = 100 * 1.0 + 300 * 0.5
    expected = (100 * (1.0 / total) * math.log(num_pixels / total)
                + 300 * (0.5 / total) * math.log(0.5 * num_pixels / total))
    assert metrics.kld(pred, gt) == pytest.approx(expected, rel=1e-6)


def test_kld_sim_disjoint_maps_match_closed_form():
    """Disjoint supports: SIM is 0 and KLD is the epsilon-dominated closed form."""
    pred = _square_map(0, 0, 20, dtype=np.float32)
    gt = _square_map(150, 150, 30)
    side_pixels = 30 * 30
    # p = 0 on the GT square, so each GT pixel contributes g ln(g / eps + eps), g = 1/(b + eps).
    gt_value = 1.0 / (side_pixels + EPS)
    expected = side_pixels * gt_value * math.log(gt_value / EPS + EPS)
    assert expected > 20.0
    assert metrics.kld(pred, gt) == pytest.approx(expected, rel=1e-7)
    assert metrics.sim(pred, gt) == 0.0


def test_nss_tiny_array_by_hand_including_per_pixel_epsilon():
    """NSS of a 2 x 3 array equals the hand value, 1e-12 per pixel included."""
    pred = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]])  # float64 to expose the 1e-12 term
    gt = np.array([[0.0, 0.1, 0.2], [0.05, 0.1, 1.0]])
    # mean 4, deviations (-3, -2, -1, 0, 1, 5), variance 40/6, std sqrt(20/3).
    # gt is already in [0, 1]; 0.1 / (1 + 1e-12) is not > 0.1, so F marks 0.2 and 1.0 only,
    # i.e. the pixels with pred 3 and 9 (z-scores -1/std and 5/std).
    std = math.sqrt(20.0 / 3.0)
    expected = (-1.0 / std + 5.0 / std) / (2.0 + 6 * EPS)
    result = metrics.nss(pred, gt)
    assert result == pytest.approx(expected, rel=1e-14, abs=0.0)
    without_pixel_eps = (4.0 / std) / 2.0
    assert without_pixel_eps - result == pytest.approx(without_pixel_eps * 3 * EPS, rel=1e-2)


def test_nss_vectorised_equals_double_python_loop():
    """The vectorised binarisation agrees with the reference per-pixel loop."""
    rng = np.random.default_rng(1)
    pred = rng.random((SIZE, SIZE)).astype(np.float32)
    gt = np.clip(rng.normal(0.3, 0.3, (SIZE, SIZE)), 0.0, 1.0)
    assert metrics.nss(pred, gt) == pytest.approx(_nss_with_python_loops(pred, gt), rel=1e-9)


def test_nss_constant_gt_gives_zero_and_constant_pred_gives_zero():
    """Degenerate inputs give 0.0 and no NaN or warning."""
    rng = np.random.default_rng(2)
    pred = rng.random((SIZE, SIZE)).astype(np.float32)
    # Constant GT: min-max gives 0 everywhere, no fixation, numerator 0.
    assert metrics.nss(pred, np.full((SIZE, SIZE), 0.7)) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert metrics.nss(np.zeros((SIZE, SIZE), np.float32), _square_map(0, 0, 9)) == 0.0


def test_normalize_map_equals_torch_bilinear_then_minmax():
    """normalize_map equals torch bilinear (no antialias) followed by min-max."""
    rng = np.random.default_rng(3)
    map14 = rng.normal(0.0, 2.0, (14, 14)).astype(np.float32)
    upsampled = torch.nn.functional.interpolate(
        torch.from_numpy(map14)[None, None], size=(SIZE, SIZE), mode='bilinear',
        align_corners=False, antialias=False)[0, 0].numpy()  # (224, 224)
    expected = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min() + 1e-10)
    result = metrics.normalize_map(map14)
    assert result.dtype == np.float32
    assert result.shape == (SIZE, SIZE)
    np.testing.assert_allclose(result, expected, rtol=0.0, atol=1e-6)
    assert result.min() == 0.0
    assert result.max() == pytest.approx(1.0, abs=1e-6)


def test_normalize_map_constant_map_gives_zeros_and_finite_metrics():
    """A constant map normalises to zeros and scores finite metrics."""
    pred = metrics.normalize_map(np.full((14, 14), 3.5, dtype=np.float32))
    assert pred.dtype == np.float32
    assert not np.isnan(pred).any()
    np.testing.assert_array_equal(pred, np.zeros((SIZE, SIZE), np.float32))
    scores = metrics.compute_metrics(pred, _square_map(50, 50, 40))
    assert all(math.isfinite(value) for value in scores.values())
    assert scores['sim'] == 0.0
    assert scores['nss'] == 0.0


def test_load_gt_map_scales_and_resizes_like_torch_bilinear():
    """load_gt_map is /255 then a float64 bilinear resize."""
    rng = np.random.default_rng(4)
    gt_uint8 = rng.integers(0, 256, (97, 131), dtype=np.uint8)
    result = metrics.load_gt_map(gt_uint8)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(gt_uint8 / 255.0)[None, None], size=(SIZE, SIZE), mode='bilinear',
        align_corners=False, antialias=False)[0, 0].numpy()
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=0.0, atol=1e-12)
    assert 0.0 <= result.min() and result.max() <= 1.0


def test_load_gt_map_rejects_float_input():
    """An already normalised float GT is rejected instead of divided again."""
    with pytest.raises(ValueError, match='uint8'):
        metrics.load_gt_map(np.zeros((10, 10), dtype=np.float32))


def test_metrics_keep_prediction_float32_precision():
    """KLD and SIM keep the float32 prediction arithmetic bit for bit."""
    rng = np.random.default_rng(5)
    pred = rng.random((SIZE, SIZE)).astype(np.float32)
    gt = rng.random((SIZE, SIZE))
    pred_dist = pred / (pred.sum() + EPS)  # float32, as in the reference
    gt_dist = gt / (gt.sum() + EPS)
    assert pred_dist.dtype == np.float32
    expected_kld = np.sum(gt_dist * np.log(gt_dist / (pred_dist + EPS) + EPS))
    assert metrics.kld(pred, gt) == expected_kld
    assert metrics.sim(pred, gt) == np.sum(np.minimum(pred_dist, gt_dist))


def test_compute_metrics_rejects_shape_mismatch():
    """Maps of different shapes raise ValueError."""
    with pytest.raises(ValueError, match='shape'):
        metrics.compute_metrics(np.zeros((4, 4), np.float32), np.zeros((4, 5)))


def test_metric_accumulator_averages_per_image_and_per_class():
    """The accumulator gives plain means overall and per class."""
    accumulator = metrics.MetricAccumulator()
    accumulator.add({'kld': 1.0, 'sim': 0.2, 'nss': 1.0}, 'hold')
    accumulator.add({'kld': 3.0, 'sim': 0.4, 'nss': 2.0}, 'hold')
    accumulator.add({'kld': 2.0, 'sim': 0.9, 'nss': 6.0}, 'cut_with')
    summary = accumulator.summary()
    assert len(accumulator) == 3
    assert summary.num_images == 3
    assert summary.images_per_class == {'cut_with': 1, 'hold': 2}
    assert summary.mean == pytest.approx({'kld': 2.0, 'sim': 0.5, 'nss': 3.0}, abs=1e-12)
    assert summary.per_class['hold'] == pytest.approx(
        {'kld': 2.0, 'sim': 0.3, 'nss': 1.5}, abs=1e-12)
    assert summary.per_class['cut_with'] == pytest.approx(
        {'kld': 2.0, 'sim': 0.9, 'nss': 6.0}, abs=1e-12)


def test_metric_accumulator_rejects_missing_metric_and_empty_summary():
    """Missing metrics and empty summaries raise."""
    accumulator = metrics.MetricAccumulator()
    with pytest.raises(RuntimeError):
        accumulator.summary()
    with pytest.raises(KeyError, match='nss'):
        accumulator.add({'kld': 1.0, 'sim': 0.5}, 'hold')
