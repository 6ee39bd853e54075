"""Tests for training.parts: k-means, exo selection, p-score, part maps (docs/method.md)."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
import torch
import torch.nn.functional as F

from training import parts


def _blobs(seed: int, per_blob: int = 20, dim: int = 5):
    """Return (3 * per_blob, dim) float32 points in three well-separated blobs and blob ids."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[8.0] * dim, [-8.0] * dim, [8.0, -8.0] * (dim // 2) + [0.0]])
    centres = centres[:, :dim]
    noise = torch.randn(3, per_blob, dim, generator=generator)  # (3, n, dim)
    points = (centres[:, None] + noise).reshape(3 * per_blob, dim)  # (3n, dim)
    return points, torch.arange(3).repeat_interleave(per_blob)


def _sklearn_lloyd(points: torch.Tensor, init: torch.Tensor, max_iter: int = 100):
    """Fit scikit-learn's Lloyd k-means from fixed initial centroids (float64)."""
    model = KMeans(n_clusters=init.shape[0], init=init.double().numpy(), n_init=1,
                   max_iter=max_iter, algorithm='lloyd', tol=0)
    model.fit(points.double().numpy())
    return model.cluster_centers_, model.labels_


@pytest.mark.parametrize('init_rows', [(0, 25, 50), (45, 5, 30), (3, 7, 41)])
def test_batched_kmeans_matches_sklearn_lloyd(init_rows):
    points, _ = _blobs(seed=0)
    init = points[list(init_rows)]  # (3, D); (3, 7, 41) puts two seeds in one blob
    centroids, assignments = parts.batched_kmeans(
        points[None], torch.ones(1, points.shape[0], dtype=torch.bool), init[None], 100)
    expected_centroids, expected_labels = _sklearn_lloyd(points, init)
    np.testing.assert_allclose(centroids[0].numpy(), expected_centroids, atol=1e-4)
    np.testing.assert_array_equal(assignments[0].numpy(), expected_labels)


def test_batched_kmeans_ignores_masked_points():
    points, _ = _blobs(seed=1)
    generator = torch.Generator().manual_seed(2)
    outliers = 50.0 + 5.0 * torch.randn(10, points.shape[1], generator=generator)
    everything = torch.cat([outliers[:5], points, outliers[5:]])  # (70, D)
    mask = torch.ones(everything.shape[0], dtype=torch.bool)
    mask[:5] = False
    mask[-5:] = False
    init = points[[0, 25, 50]]
    centroids, assignments = parts.batched_kmeans(everything[None], mask[None], init[None], 100)
    expected_centroids, expected_labels = _sklearn_lloyd(points, init)
    np.testing.assert_allclose(centroids[0].numpy(), expected_centroids, atol=1e-4)
    np.testing.assert_array_equal(assignments[0, mask].numpy(), expected_labels)
    assert (assignments[0, ~mask] == -1).all()


def test_batched_kmeans_empty_cluster_gives_zero_centroid():
    generator = torch.Generator().manual_seed(3)
    points = torch.cat([10.0 + 0.1 * torch.randn(6, 2, generator=generator),
                        -10.0 + 0.1 * torch.randn(6, 2, generator=generator)])  # (12, 2)
    init = torch.tensor([[10.0, 10.0], [-10.0, -10.0], [1000.0, 1000.0]])
    centroids, assignments = parts.batched_kmeans(
        points[None], torch.ones(1, 12, dtype=torch.bool), init[None], 10)
    assert torch.equal(centroids[0, 2], torch.zeros(2))
    torch.testing.assert_close(centroids[0, 0], points[:6].mean(dim=0), atol=1e-6, rtol=0)
    torch.testing.assert_close(centroids[0, 1], points[6:].mean(dim=0), atol=1e-6, rtol=0)
    assert set(assignments[0].tolist()) == {0, 1}


def test_batched_kmeans_batch_equals_single_runs():
    generator = torch.Generator().manual_seed(4)
    points = torch.randn(4, 30, 6, generator=generator)
    mask = torch.rand(4, 30, generator=generator) > 0.3
    init = parts.init_centroids_from_points(points, mask, 3, generator)
    centroids, assignments = parts.batched_kmeans(points, mask, init, 20)
    for b in range(4):
        single_centroids, single_assignments = parts.batched_kmeans(
            points[b:b + 1], mask[b:b + 1], init[b:b + 1], 20)
        torch.testing.assert_close(centroids[b], single_centroids[0], atol=1e-6, rtol=0)
        assert torch.equal(assignments[b], single_assignments[0])


def test_init_centroids_from_points_draws_distinct_valid_points():
    points = torch.arange(4 * 10, dtype=torch.float32).view(4, 10, 1)  # tag = b * 10 + i
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[:, 2:9:2] = True  # 4 valid points per sample: 2, 4, 6, 8
    for seed in range(20):
        init = parts.init_centroids_from_points(points, mask, 3,
                                                torch.Generator().manual_seed(seed))
        for b in range(4):
            chosen = [int(value) - b * 10 for value in init[b, :, 0].tolist()]
            assert set(chosen) <= {2, 4, 6, 8}
            assert len(set(chosen)) == 3


def test_init_centroids_from_points_draws_with_replacement_when_few_valid():
    points = torch.arange(12, dtype=torch.float32).view(1, 12, 1)
    mask = torch.zeros(1, 12, dtype=torch.bool)
    mask[0, [3, 9]] = True
    drawn = set()
    for seed in range(30):
        init = parts.init_centroids_from_points(points, mask, 3,
                                                torch.Generator().manual_seed(seed))
        values = init[0, :, 0].tolist()
        assert set(values) <= {3.0, 9.0}
        drawn.update(values)
    assert drawn == {3.0, 9.0}


def test_init_centroids_from_points_is_reproducible_with_generator():
    points = torch.randn(3, 20, 4, generator=torch.Generator().manual_seed(5))
    mask = torch.ones(3, 20, dtype=torch.bool)
    first = parts.init_centroids_from_points(points, mask, 3, torch.Generator().manual_seed(9))
    second = parts.init_centroids_from_points(points, mask, 3, torch.Generator().manual_seed(9))
    assert torch.equal(first, second)


def test_compute_pscores_hand_computed_case():
    # 3x3 grid; saliency A = pixels {0, 1, 3, 4}, |A| = 4.
    saliency = torch.tensor([[1, 1, 0, 1, 1, 0, 0, 0, 0]], dtype=torch.float64)
    maps = torch.tensor([[
        [2.0, 2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # M = {0, 1, 3}: inside A
        [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0],  # M = {2, 4, 5, 7, 8}: I = 1
        [-1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0],  # M = all but pixel 0: I = 3
    ]], dtype=torch.float64)
    # cluster 0: I = 3, |M| = 3, U = 3 + 4 - 3 = 4
    # cluster 1: I = 1, |M| = 5, U = 5 + 4 - 1 = 8
    # cluster 2: I = 3, |M| = 8, U = 8 + 4 - 3 = 9
    expected = torch.tensor([[0.5 * (3 / (3 + 1e-10) + 4 / (4 + 1e-10)),
                              0.5 * (1 / (5 + 1e-10) + 4 / (8 + 1e-10)),
                              0.5 * (3 / (8 + 1e-10) + 4 / (9 + 1e-10))]], dtype=torch.float64)
    pscores = parts.compute_pscores(maps, saliency)
    torch.testing.assert_close(pscores, expected, atol=1e-15, rtol=0)
    assert pscores[0, 0] < 1.0  # the 1e-10 epsilons are in both denominators


def test_compute_pscores_zero_cluster_scores_half_with_epsilons():
    saliency = torch.tensor([[1, 0, 0, 1, 0, 0, 0, 0, 0]], dtype=torch.float64)
    maps = torch.zeros(1, 1, 9, dtype=torch.float64)  # a zero centroid's map: M is empty
    pscores = parts.compute_pscores(maps, saliency)
    expected = 0.5 * (0.0 / (0.0 + 1e-10) + 2.0 / (2.0 + 1e-10))
    assert torch.isfinite(pscores).all()
    assert abs(float(pscores[0, 0]) - expected) < 1e-16


def test_choose_part_ties_take_first_index():
    pscores = torch.tensor([[0.7, 0.7, 0.2], [0.2, 0.9, 0.9], [0.8, 0.8, 0.8]])
    best, accepted = parts.choose_part(pscores, 0.6)
    assert best.tolist() == [0, 1, 0]
    assert accepted.tolist() == [True, True, True]


def test_choose_part_falls_back_below_alpha():
    pscores = torch.tensor([[0.59, 0.1, 0.3], [0.6, 0.1, 0.3], [0.5, 0.5, 0.5]])
    best, accepted = parts.choose_part(pscores, 0.6)
    assert accepted.tolist() == [False, True, False]  # max == alpha is accepted
    assert best.tolist() == [0, 0, 0]


def test_compute_region_maps_epoch_zero_and_later():
    s_exo = torch.tensor([[[0.5, -0.2], [0.1, 0.3]]])
    cam_exo = torch.tensor([[[2.0, 3.0], [-1.0, 0.5]]], requires_grad=True)
    assert torch.equal(parts.compute_region_maps(s_exo, cam_exo, 0), s_exo)
    later = parts.compute_region_maps(s_exo, cam_exo, 1)
    torch.testing.assert_close(later, torch.tensor([[[1.0, 0.0], [0.0, 0.15]]]),
                               atol=1e-7, rtol=0)
    assert not later.requires_grad


def _tagged_exo_keys(batch: int, num_exo: int, grid: int) -> torch.Tensor:
    """(B, E*P, 2) descriptors whose values are their own (flat exo image f, patch p)."""
    flat = torch.arange(batch * num_exo, dtype=torch.float32)
    patch = torch.arange(grid * grid, dtype=torch.float32)
    tags = torch.stack(torch.broadcast_tensors(flat[:, None], patch[None, :]), dim=-1)
    return tags.reshape(batch, num_exo * grid * grid, 2)  # (BE, P, 2) -> (B, E*P, 2)


def _selected_tags(mask: torch.Tensor, tags: torch.Tensor, b: int):
    """Set of (f, p) tags selected for sample b."""
    return {(int(f), int(p)) for f, p in tags[b][mask[b]].tolist()}


def test_select_exo_descriptors_intended_picks_pixels_of_right_image():
    batch, num_exo, grid = 2, 3, 4
    region = torch.zeros(batch * num_exo, grid, grid)
    hot = {(0, 5), (0, 6), (1, 15), (2, 0), (3, 9), (4, 10), (4, 11), (5, 3)}
    for f, p in hot:
        region[f, p // grid, p % grid] = 1.0 + 0.1 * p
    region[:, 3, 0] = 0.55 * region.flatten(1).amax(dim=1)  # decoy patch 12: r' = 0.55 < 0.6
    mask = parts.select_exo_descriptors(region, num_exo, 0.6)
    tags = _tagged_exo_keys(batch, num_exo, grid)
    assert _selected_tags(mask, tags, 0) == {tag for tag in hot if tag[0] < 3}
    assert _selected_tags(mask, tags, 1) == {tag for tag in hot if tag[0] >= 3}


def test_select_exo_descriptors_legacy_picks_only_row_zero():
    batch, num_exo, grid, threshold = 3, 3, 4, 0.6
    region = torch.rand(batch * num_exo, grid, grid, generator=torch.Generator().manual_seed(6))
    mask = parts.select_exo_descriptors(region, num_exo, threshold, legacy_row_indexing=True)
    tags = _tagged_exo_keys(batch, num_exo, grid)
    for b in range(batch):
        expected = set()
        for n in range(num_exo):
            row = region[b, n].tolist()  # the reference's R[b, n]: row n of flat image b
            low, high = min(row), max(row)
            for column, value in enumerate(row):
                if (value - low) / (high - low + 1e-10) > threshold:
                    expected.add((b * num_exo + n, column))
        selected = _selected_tags(mask, tags, b)
        assert selected == expected
        assert all(p < grid for _, p in selected)


def test_compute_cluster_maps_ego_is_sign_times_cosine():
    generator = torch.Generator().manual_seed(7)
    keys_ego = torch.randn(2, 9, 5, generator=generator)
    keys_exo = torch.randn(2, 18, 5, generator=generator)
    s_ego = torch.randn(2, 3, 3, generator=generator)
    s_ego[0, 1, 1] = 0.0
    centroids = F.normalize(torch.randn(2, 3, 5, generator=generator), dim=-1)
    ego, exo = parts.compute_cluster_maps(keys_ego, s_ego, keys_exo, centroids)
    for b in range(2):
        for k in range(3):
            for p in range(9):
                cosine = float(centroids[b, k] @ keys_ego[b, p] / keys_ego[b, p].norm())
                sign = float(torch.sign(s_ego[b].flatten()[p]))
                assert abs(float(ego[b, k, p]) - sign * cosine) < 1e-6
            for p in range(18):
                cosine = float(centroids[b, k] @ keys_exo[b, p] / keys_exo[b, p].norm())
                assert abs(float(exo[b, k, p]) - cosine) < 1e-6
    assert (ego[0, :, 4] == 0).all()


def test_compute_part_maps_joint_softmax_over_all_exo_pixels():
    generator = torch.Generator().manual_seed(8)
    batch, num_exo, pixels = 2, 3, 9
    keys_ego = torch.randn(batch, pixels, 4, generator=generator)
    keys_exo = torch.randn(batch, num_exo * pixels, 4, generator=generator)
    centroid = F.normalize(torch.randn(batch, 4, generator=generator), dim=-1)
    cosine_ego = torch.rand(batch, pixels, generator=generator)
    cosine_exo = torch.rand(batch, num_exo * pixels, generator=generator)
    ego, exo = parts.compute_part_maps(cosine_ego, cosine_exo, keys_ego, keys_exo, centroid)
    softmax_exo = 2 * exo - cosine_exo
    torch.testing.assert_close(softmax_exo.sum(dim=1), torch.ones(batch), atol=1e-6, rtol=0)
    torch.testing.assert_close((2 * ego - cosine_ego).sum(dim=1), torch.ones(batch),
                               atol=1e-6, rtol=0)
    for b in range(batch):
        weights = [np.exp(-float((keys_exo[b, q] - centroid[b]).norm()))
                   for q in range(num_exo * pixels)]
        for q in range(num_exo * pixels):
            expected = 0.5 * (float(cosine_exo[b, q]) + weights[q] / sum(weights))
            assert abs(float(exo[b, q]) - expected) < 1e-6
        weights = [np.exp(-float((keys_ego[b, p] - centroid[b]).norm())) for p in range(pixels)]
        for p in range(pixels):
            expected = 0.5 * (float(cosine_ego[b, p]) + weights[p] / sum(weights))
            assert abs(float(ego[b, p]) - expected) < 1e-6
    per_image = softmax_exo.view(batch, num_exo, pixels).sum(dim=2)  # (B, E)
    assert not torch.allclose(per_image, torch.ones(batch, num_exo), atol=1e-3)


def test_compute_fallback_exo_maps_intended_and_legacy():
    s_exo = torch.arange(6 * 4 * 4, dtype=torch.float32).view(6, 4, 4)
    assert torch.equal(parts.compute_fallback_exo_maps(s_exo, 3), s_exo)
    legacy = parts.compute_fallback_exo_maps(s_exo, 3, legacy_row_indexing=True)
    for b in range(2):
        for n in range(3):
            for row in range(4):
                assert torch.equal(legacy[b * 3 + n, row], s_exo[b, n])


def _discovery_inputs():
    """Sample 0 has a clear salient part in three key blobs; sample 1 selects nothing."""
    generator = torch.Generator().manual_seed(10)
    num_exo, grid = 2, 4
    directions = 10.0 * torch.eye(3)  # blobs A, B, C
    layout = torch.tensor([0] * 4 + [1] * 4 + [2] * 4 + [1] * 4)  # blob of each patch
    keys = directions[layout] + 0.3 * torch.randn(6, 16, 3, generator=generator)  # (6, P, 3)
    s_exo = torch.zeros(4, grid, grid)
    s_exo[:2].view(2, 16)[:, :12] = 1.0  # sample 0: patches 0..11 of both exo images
    s_exo[2:] = 0.4  # sample 1: constant map -> nothing above gamma 1
    saliency = torch.zeros(2, 16)
    saliency[:, :4] = 1.0  # the blob-A patches
    s_ego = 0.2 + 0.01 * torch.rand(2, grid, grid, generator=generator)
    inputs = parts.PartInputs(
        keys_ego=keys[:2], keys_exo=keys[2:], s_ego=s_ego, s_exo=s_exo,
        cam_exo=torch.ones(4, grid, grid), saliency=saliency, epoch=0)
    return inputs, parts.PartSettings(num_exo=num_exo, kmeans_iters=20)


def test_discover_parts_finds_salient_part_and_falls_back():
    inputs, settings = _discovery_inputs()
    result = parts.discover_parts(inputs, settings, torch.Generator().manual_seed(0))
    assert result.is_part.tolist() == [True, False]
    assert result.num_selected.tolist() == [24, 0]
    torch.testing.assert_close(result.centroid[0], torch.tensor([1.0, 0.0, 0.0]),
                               atol=0.05, rtol=0)
    assert float(result.pscores[0].max()) > 0.99
    assert torch.equal(result.centroid[1], torch.zeros(3))
    assert torch.equal(result.pscores[1], torch.zeros(3))
    assert torch.equal(result.ego[1], inputs.s_ego[1])
    assert torch.equal(result.exo[2:], inputs.s_exo[2:])
    ego_part = result.ego[0].flatten()
    assert float(ego_part[:4].min()) > float(ego_part[4:].max())
    assert all(torch.isfinite(t).all() for t in (result.ego, result.exo, result.pscores))


def test_discover_parts_legacy_uses_rows_and_striped_fallback():
    inputs, settings = _discovery_inputs()
    legacy = parts.PartSettings(num_exo=settings.num_exo, kmeans_iters=settings.kmeans_iters,
                                legacy_row_indexing=True)
    result = parts.discover_parts(inputs, legacy, torch.Generator().manual_seed(0))
    # rows 0 and 1 of flat exo image 0 are constant -> nothing selected -> fallback
    assert result.is_part.tolist() == [False, False]
    for b in range(2):
        for n in range(2):
            expected = inputs.s_exo[b, n][None].expand(4, 4)
            assert torch.equal(result.exo[b * 2 + n], expected)
