"""Part discovery for the prototype loss: batched k-means, p-score, part maps (docs/method.md).

The reference loops over the samples of a batch and calls a k-means library with a tolerance
check (one host sync per iteration). Here every step is batched over the batch on the device:
each sample's exo descriptors are one masked point set, k-means runs a fixed number of Lloyd
iterations, and samples that fall back to object-level maps are chosen with ``torch.where``.
Nothing in this module reads a tensor value on the host.

Shapes: B samples, E exo images per sample (flat exo index f = b * E + n), G grid side,
P = G * G patches, D descriptor width, K clusters.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

from affordance_grounding.model.calibration import minmax_last_dim
import torch
import torch.nn.functional as F

from training.config import TrainConfig

REGION_EPS = 1e-10  # min-max of the exo region maps (docs/method.md, "Training step")
CLUSTER_MAP_EPS = 1e-12  # min-max of the ego cluster maps (3.6 step 5)
PSCORE_EPS = 1e-10  # both p-score denominators (3.6 step 5)
MIN_POINTS = 3  # fewer selected exo descriptors -> object-level fallback (3.6 step 2)


@dataclass
class PartInputs:
    """Tensors of one batch that part discovery reads; none of them needs a gradient.

    Attributes:
        keys_ego: (B, P, D) DINO keys of the ego images.
        keys_exo: (BE, P, D) DINO keys of the exo images, f = b * E + n.
        s_ego: (B, G, G) raw ego CLIP cosine with the item prompt.
        s_exo: (BE, G, G) exo CLIP map LM(O) * Q (docs/method.md, "Training step").
        cam_exo: (BE, G, G) raw exo CAM of each sample's label.
        saliency: (B, P) binary DINO saliency of the ego images (docs/method.md, "Model").
        epoch: 0-based epoch index (selects the region map, docs/method.md, "Training step").
    """

    keys_ego: torch.Tensor
    keys_exo: torch.Tensor
    s_ego: torch.Tensor
    s_exo: torch.Tensor
    cam_exo: torch.Tensor
    saliency: torch.Tensor
    epoch: int


@dataclass(frozen=True)
class PartSettings:
    """Hyper-parameters of part discovery (names as in ``training.config.TrainConfig``).

    Attributes:
        num_exo: Exo images per sample (E).
        gamma_exo: Region threshold gamma 1 on the min-max region map.
        pscore_threshold: Acceptance threshold alpha on the best p-score.
        num_clusters: k-means clusters (K).
        kmeans_iters: Fixed number of Lloyd iterations.
        legacy_row_indexing: Reproduce the released code's row-indexing of the exo region map
            and of the exo fallback map instead of per-image indexing (docs/method.md,
            "Reference bugs").
    """

    num_exo: int = TrainConfig.num_exo  # defaults: the recipe's, from their one home
    gamma_exo: float = TrainConfig.gamma_exo
    pscore_threshold: float = TrainConfig.pscore_threshold
    num_clusters: int = TrainConfig.num_clusters
    kmeans_iters: int = TrainConfig.kmeans_iters
    legacy_row_indexing: bool = TrainConfig.legacy_row_indexing


@dataclass
class PartMaps:
    """Result of part discovery for one batch.

    Attributes:
        ego: (B, G, G) ego probability maps P_ego (part-level or the CLIP fallback).
        exo: (BE, G, G) exo probability maps P_exo.
        is_part: (B,) bool, True where part-level maps were used.
        centroid: (B, D) chosen unit centroid; zero where ``is_part`` is False.
        pscores: (B, K) p-score of every cluster; zero where fewer than 3 descriptors were
            selected (the reference never clusters those samples).
        num_selected: (B,) number of exo descriptors given to k-means.
    """

    ego: torch.Tensor
    exo: torch.Tensor
    is_part: torch.Tensor
    centroid: torch.Tensor
    pscores: torch.Tensor
    num_selected: torch.Tensor


def init_centroids_from_points(points: torch.Tensor, mask: torch.Tensor, k: int,
                               generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Draw ``k`` valid points per sample as initial centroids.

    Samples with at least ``k`` valid points draw them without replacement (distinct points,
    so no duplicate centroids); samples with fewer draw with replacement. The reference
    library draws with replacement in every case (docs/method.md, "Reference bugs"), which often
    duplicates a centroid when few points are selected; the spread-out draw is a deliberate
    deviation.
    A sample without valid points gets arbitrary (masked) points; its clusters end up empty.

    Args:
        points: (B, N, D) point sets.
        mask: (B, N) bool, True for valid points.
        k: Number of centroids.
        generator: Random source; its device is used for the draw (None = global RNG).

    Returns:
        (B, k, D) initial centroids.
    """
    batch, num_points, _ = points.shape
    device = generator.device if generator is not None else points.device
    scores = torch.rand(batch, num_points, generator=generator, device=device)  # (B, N)
    uniform = torch.rand(batch, k, generator=generator, device=device)  # (B, k)
    scores, uniform = scores.to(points.device), uniform.to(points.device)
    # valid points first, in random order: order[b, :count[b]] is a random permutation
    order = scores.masked_fill(~mask, 2.0).argsort(dim=1)  # (B, N)
    count = mask.sum(dim=1, keepdim=True)  # (B, 1)
    distinct = torch.arange(k, device=points.device).clamp(max=num_points - 1)  # (k,)
    repeated = (uniform * count).long().clamp(max=num_points - 1)  # (B, k), with replacement
    slot = torch.where(count >= k, distinct.expand(batch, k), repeated)  # (B, k)
    index = order.gather(1, slot)  # (B, k) point indices
    return points.gather(1, index[..., None].expand(-1, -1, points.shape[2]))  # (B, k, D)


def assign_to_centroids(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (euclidean; first index on ties) for every point.

    Args:
        points: (B, N, D) points.
        centroids: (B, K, D) centroids.

    Returns:
        (B, N) int64 cluster indices.
    """
    distances = torch.cdist(points, centroids,
                            compute_mode='donot_use_mm_for_euclid_dist')  # (B, N, K)
    return distances.argmin(dim=2)


def batched_kmeans(points: torch.Tensor, mask: torch.Tensor, init_centroids: torch.Tensor,
                   num_iters: int, check_every: int = 10) -> Tuple[torch.Tensor, torch.Tensor]:
    """Lloyd k-means (euclidean) on a batch of masked point sets, fixed iteration count.

    Each iteration assigns every valid point to its nearest centroid and replaces each
    centroid by the mean of its points; a cluster without points becomes the zero vector (the
    reference library's NaN -> 0 behaviour, docs/method.md). There is no per-iteration
    tolerance check: every ``check_every`` iterations one host sync asks whether any centroid
    still moves, and the loop stops when none does. A converged solution is a fixed point, so
    stopping there gives exactly the result of running all ``num_iters`` iterations.

    Args:
        points: (B, N, D) point sets.
        mask: (B, N) bool, True for points that take part.
        init_centroids: (B, K, D) initial centroids.
        num_iters: Maximum number of Lloyd iterations (>= 0).
        check_every: Iterations between convergence checks (0 = never check).

    Returns:
        ``(centroids, assignments)``: (B, K, D) final centroids and (B, N) int64 index of the
        nearest final centroid for every valid point, -1 for masked points.
    """
    num_clusters = init_centroids.shape[1]
    centroids = init_centroids
    weights = mask.to(points.dtype)[..., None]  # (B, N, 1)
    for iteration in range(1, num_iters + 1):
        previous = centroids
        assignments = assign_to_centroids(points, centroids)  # (B, N)
        members = F.one_hot(assignments, num_clusters).to(points.dtype) * weights  # (B, N, K)
        sums = members.transpose(1, 2) @ points  # (B, K, D)
        counts = members.sum(dim=1)[..., None]  # (B, K, 1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1.0),
                                torch.zeros_like(sums))  # (B, K, D)
        if check_every and iteration % check_every == 0 and torch.equal(centroids, previous):
            break
    assignments = assign_to_centroids(points, centroids).masked_fill(~mask, -1)  # (B, N)
    return centroids, assignments


def compute_region_maps(s_exo: torch.Tensor, cam_exo: torch.Tensor, epoch: int) -> torch.Tensor:
    """Exo region map R used to pick k-means inputs (docs/method.md, "Training step"); detached.

    Args:
        s_exo: (BE, G, G) exo CLIP map.
        cam_exo: (BE, G, G) raw exo CAM of the label.
        epoch: 0-based epoch; epoch 0 uses the CLIP map alone.

    Returns:
        (BE, G, G) R = S_exo (epoch 0) or max(S_exo, 0) * max(CAM, 0) (later epochs).
    """
    if epoch == 0:
        return s_exo.detach()
    return (s_exo.clamp(min=0) * cam_exo.clamp(min=0)).detach()


def select_exo_descriptors(region: torch.Tensor, num_exo: int, threshold: float,
                           legacy_row_indexing: bool = False) -> torch.Tensor:
    """Mask of the exo descriptors each sample clusters (docs/method.md, "Training step").

    Intended: exo image f keeps patch p when its min-max (eps 1e-10) region value exceeds the
    threshold. Legacy: the reference indexes the (BE, G, G) map as (B, E, G, G), so sample b,
    slot n reads row n of flat image b (G values), min-maxes those and keeps the matching
    columns of the top row (patches 0..G-1) of its own exo image (b, n).

    Args:
        region: (BE, G, G) region maps.
        num_exo: Exo images per sample (E).
        threshold: gamma 1.
        legacy_row_indexing: Reproduce the released code's indexing.

    Returns:
        (B, E * P) bool; column n * P + p is patch p of exo image b * E + n, matching
        ``keys_exo.view(B, E * P, D)``.
    """
    flat_images, grid, _ = region.shape
    batch = flat_images // num_exo
    if not legacy_row_indexing:
        normalised = minmax_last_dim(region.reshape(flat_images, grid * grid),
                                     REGION_EPS)  # (BE, P)
        return (normalised > threshold).reshape(batch, num_exo * grid * grid)  # (B, E*P)
    rows = region[:batch, :num_exo, :]  # (B, E, G): row n of flat image b
    top_row = minmax_last_dim(rows, REGION_EPS) > threshold  # (B, E, G)
    selected = torch.zeros(batch, num_exo, grid * grid, dtype=torch.bool, device=region.device)
    selected[:, :, :grid] = top_row  # (B, E, P): only patches of row 0
    return selected.reshape(batch, num_exo * grid * grid)  # (B, E*P)


def compute_cluster_maps(keys_ego: torch.Tensor, s_ego: torch.Tensor, keys_exo: torch.Tensor,
                         unit_centroids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cosine maps of every unit centroid (docs/method.md, "Training step").

    The ego keys are weighted by the raw CLIP cosine before the L2 normalisation, as in the
    reference; the weight cancels except for its sign, so the ego map is
    sign(S_ego) * cos(centroid, key) (0 where S_ego = 0).

    Args:
        keys_ego: (B, P, D) ego keys.
        s_ego: (B, G, G) raw ego CLIP cosine.
        keys_exo: (B, E*P, D) exo keys of each sample, image-major.
        unit_centroids: (B, K, D) L2-normalised centroids (zero rows allowed).

    Returns:
        ``(ego, exo)``: (B, K, P) and (B, K, E*P) cosine maps.
    """
    weighted = keys_ego * s_ego.flatten(1)[..., None]  # (B, P, D)
    ego_units = F.normalize(weighted, dim=-1, eps=1e-12)  # (B, P, D)
    exo_units = F.normalize(keys_exo, dim=-1, eps=1e-12)  # (B, E*P, D)
    ego = unit_centroids @ ego_units.transpose(1, 2)  # (B, K, P)
    exo = unit_centroids @ exo_units.transpose(1, 2)  # (B, K, E*P)
    return ego, exo


def compute_pscores(cluster_maps: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
    """Part-IoU score of every cluster against the ego saliency (docs/method.md, "Training step").

    pscore = 1/2 (I / (|M| + 1e-10) + |A| / (|M| + |A| - I + 1e-10)) with M the cluster
    region (min-max map, eps 1e-12, strictly above its mean), A the saliency, I = |M & A|.

    Args:
        cluster_maps: (B, K, P) ego cluster maps.
        saliency: (B, P) binary saliency (0/1).

    Returns:
        (B, K) p-scores.
    """
    normalised = minmax_last_dim(cluster_maps, CLUSTER_MAP_EPS)  # (B, K, P)
    region = (normalised > normalised.mean(dim=-1, keepdim=True)).to(cluster_maps.dtype)
    salient = saliency.to(cluster_maps.dtype)[:, None, :]  # (B, 1, P)
    intersection = (region * salient).sum(dim=-1)  # (B, K)
    region_size = region.sum(dim=-1)  # (B, K)
    salient_size = salient.sum(dim=-1)  # (B, 1)
    union = region_size + salient_size - intersection  # (B, K)
    return 0.5 * (intersection / (region_size + PSCORE_EPS)
                  + salient_size / (union + PSCORE_EPS))


def choose_part(pscores: torch.Tensor, threshold: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pick the best cluster per sample; reject when its p-score is below ``threshold``.

    Args:
        pscores: (B, K) p-scores.
        threshold: alpha.

    Returns:
        ``(best, accepted)``: (B,) index of the first maximum and (B,) bool max >= alpha.
    """
    best_score, best = pscores.max(dim=1)  # first index among equal maxima
    return best, best_score >= threshold


def compute_part_maps(cosine_ego: torch.Tensor, cosine_exo: torch.Tensor,
                      keys_ego: torch.Tensor, keys_exo: torch.Tensor,
                      centroid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Average of the cosine map and the softmax-distance map (docs/method.md, "Training step").

    The softmax runs over the P ego pixels, and over all E*P exo pixels of a sample jointly,
    of the negative distance between the raw key and the unit centroid.

    Args:
        cosine_ego: (B, P) chosen cluster's ego cosine map.
        cosine_exo: (B, E*P) chosen cluster's exo cosine maps.
        keys_ego: (B, P, D) ego keys.
        keys_exo: (B, E*P, D) exo keys.
        centroid: (B, D) chosen unit centroid.

    Returns:
        ``(ego, exo)``: (B, P) and (B, E*P) part maps.
    """
    distance_ego = torch.linalg.vector_norm(keys_ego - centroid[:, None], dim=-1)  # (B, P)
    distance_exo = torch.linalg.vector_norm(keys_exo - centroid[:, None], dim=-1)  # (B, E*P)
    ego = 0.5 * (cosine_ego + torch.softmax(-distance_ego, dim=1))
    exo = 0.5 * (cosine_exo + torch.softmax(-distance_exo, dim=1))
    return ego, exo


def compute_fallback_exo_maps(s_exo: torch.Tensor, num_exo: int,
                              legacy_row_indexing: bool = False) -> torch.Tensor:
    """Object-level exo maps used when no part is accepted (docs/method.md, "Training step").

    Args:
        s_exo: (BE, G, G) exo CLIP maps.
        num_exo: Exo images per sample (E).
        legacy_row_indexing: Reproduce the reference: slot (b, n) gets row n of flat image b,
            broadcast down all G rows (vertical stripes from the wrong image).

    Returns:
        (BE, G, G) fallback maps (S_exo itself when not legacy).
    """
    if not legacy_row_indexing:
        return s_exo
    flat_images, grid, _ = s_exo.shape
    batch = flat_images // num_exo
    rows = s_exo[:batch, :num_exo, :]  # (B, E, G): row n of flat image b
    stripes = rows[:, :, None, :].expand(batch, num_exo, grid, grid)  # (B, E, G, G)
    return stripes.reshape(flat_images, grid, grid)  # (BE, G, G)


def discover_parts(inputs: PartInputs, settings: PartSettings,
                   generator: Optional[torch.Generator] = None) -> PartMaps:
    """Part-level or object-level probability maps for every sample (docs/method.md).

    Runs in float32 with autocast disabled (k-means assignments are sensitive to precision).

    Args:
        inputs: Batch tensors.
        settings: Hyper-parameters.
        generator: Random source for the k-means initialisation.

    Returns:
        The maps, the part flags, the chosen centroids and the p-scores.
    """
    with torch.autocast(device_type=inputs.keys_ego.device.type, enabled=False):
        return _discover_parts(inputs, settings, generator)


def _discover_parts(inputs: PartInputs, settings: PartSettings,
                    generator: Optional[torch.Generator]) -> PartMaps:
    """Body of :func:`discover_parts` (float32, no autocast)."""
    s_ego, s_exo = inputs.s_ego.detach().float(), inputs.s_exo.detach().float()
    batch, grid, _ = s_ego.shape
    keys_ego = inputs.keys_ego.detach().float()  # (B, P, D)
    keys_exo = inputs.keys_exo.detach().float().reshape(
        batch, settings.num_exo * grid * grid, -1)  # (BE, P, D) -> (B, E*P, D)
    region = compute_region_maps(s_exo, inputs.cam_exo.float(), inputs.epoch)  # (BE, G, G)
    selected = select_exo_descriptors(region, settings.num_exo, settings.gamma_exo,
                                      settings.legacy_row_indexing)  # (B, E*P)
    num_selected = selected.sum(dim=1)  # (B,)
    enough = num_selected >= MIN_POINTS  # (B,)

    start = init_centroids_from_points(keys_exo, selected, settings.num_clusters, generator)
    centroids, _ = batched_kmeans(keys_exo, selected, start, settings.kmeans_iters)
    unit_centroids = F.normalize(centroids, dim=-1, eps=1e-12)  # (B, K, D); zero stays zero
    cosine_ego, cosine_exo = compute_cluster_maps(keys_ego, s_ego, keys_exo, unit_centroids)
    pscores = compute_pscores(cosine_ego, inputs.saliency.float())  # (B, K)
    pscores = torch.where(enough[:, None], pscores, torch.zeros_like(pscores))
    best, accepted = choose_part(pscores, settings.pscore_threshold)
    is_part = enough & accepted  # (B,)

    centroid = unit_centroids.gather(
        1, best[:, None, None].expand(-1, 1, unit_centroids.shape[2]))[:, 0]  # (B, D)
    chosen_ego = cosine_ego.gather(
        1, best[:, None, None].expand(-1, 1, cosine_ego.shape[2]))[:, 0]  # (B, P)
    chosen_exo = cosine_exo.gather(
        1, best[:, None, None].expand(-1, 1, cosine_exo.shape[2]))[:, 0]  # (B, E*P)
    part_ego, part_exo = compute_part_maps(chosen_ego, chosen_exo, keys_ego, keys_exo,
                                           centroid)  # (B, P), (B, E*P)

    fallback_exo = compute_fallback_exo_maps(s_exo, settings.num_exo,
                                             settings.legacy_row_indexing)  # (BE, G, G)
    ego = torch.where(is_part[:, None, None],
                      part_ego.view(batch, grid, grid), s_ego)  # (B, P) -> (B, G, G)
    exo = torch.where(is_part[:, None, None, None],
                      part_exo.view(batch, settings.num_exo, grid, grid),  # (B, E, G, G)
                      fallback_exo.view(batch, settings.num_exo, grid, grid))  # (B, E, G, G)
    return PartMaps(ego=ego, exo=exo.reshape(batch * settings.num_exo, grid, grid),  # (BE,G,G)
                    is_part=is_part, centroid=centroid * is_part[:, None].to(centroid.dtype),
                    pscores=pscores, num_selected=num_selected)
