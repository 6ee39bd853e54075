"""Does the p-score select the cluster of the acting part? The part-selection mechanism, probed.

Part-level prototypes (docs/method.md) cluster exo DINO keys picked by the exo CLIP map into
K groups, draw each cluster's map on the ego image, and keep the cluster whose map best
overlaps the ego DINO saliency (the p-score), or fall back to the object-level CLIP map when
no p-score reaches alpha. This probe runs exactly that (``training.parts``, epoch-0 region
maps: the CLIP map alone, as no CAM exists yet) on training samples of the synthetic world,
whose acting part is known, and asks for each sample whether the chosen cluster's region
(the binarised map the p-score reads) overlaps the acting part's patches better than the
other clusters' regions do.
"""

from typing import Dict

from affordance_grounding.config import ModelConfig
from affordance_grounding.model.factory import build_grounder_with_tables
from affordance_grounding.model.saliency import compute_saliency
import numpy as np
import torch
import torch.nn.functional as F
from training.model import compute_clip_affinities, SelectiveCLModel
from training.parts import (
    batched_kmeans, choose_part, compute_cluster_maps, compute_pscores, compute_region_maps,
    init_centroids_from_points, MIN_POINTS, PartSettings, select_exo_descriptors)
from training.pretrain.probe_inputs import render_specs
from training.pretrain.scenes import normalise, PAIRS
from training.synthetic import ItemSpec

NUM_EXO = 3


def cluster_regions(cluster_maps: torch.Tensor) -> torch.Tensor:
    """(B, K, P) cluster maps -> (B, K, P) bool regions, binarised as the p-score does."""
    low = cluster_maps.amin(dim=-1, keepdim=True)
    normalised = (cluster_maps - low) / (cluster_maps.amax(dim=-1, keepdim=True) - low + 1e-12)
    return normalised > normalised.mean(dim=-1, keepdim=True)


def region_iou(regions: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the IoU of (B, K, P) bool regions with (B, P) bool targets: (B, K)."""
    target = target[:, None]
    union = (regions | target).sum(-1).float()
    return (regions & target).sum(-1).float() / union.clamp(min=1)


def score_selection(ious: torch.Tensor, best: torch.Tensor, accepted: torch.Tensor,
                    pscores: torch.Tensor) -> Dict[str, float]:
    """Summarise one probe run.

    Args:
        ious: (B, K) acting-part IoU of every cluster region.
        best: (B,) cluster the p-score ranks first.
        accepted: (B,) bool, part level used (False = object-level fallback).
        pscores: (B, K) p-scores.

    Returns:
        ``selection_accuracy``: among part-level samples, the share whose chosen cluster has
        the highest acting-part IoU; ``selection_chance``: the same share for a cluster drawn
        at random; ``fallback_fraction``; the chosen and the best clusters' mean IoU; the
        mean best p-score.
    """
    chosen = ious.gather(1, best[:, None])[:, 0]  # (B,)
    top = ious.amax(dim=1)  # (B,)
    is_top = ious >= top[:, None] - 1e-9  # (B, K)
    correct = is_top.gather(1, best[:, None])[:, 0]  # (B,)

    def share(values: torch.Tensor) -> float:
        """Mean over the part-level samples (NaN when every sample fell back)."""
        return float(values[accepted].float().mean()) if accepted.any() else float('nan')

    return {'selection_accuracy': share(correct),
            'selection_chance': share(is_top.float().mean(dim=1)),
            'fallback_fraction': float((~accepted).float().mean()),
            'selected_part_iou': share(chosen), 'best_cluster_part_iou': share(top),
            'best_pscore': float(pscores.amax(dim=1).mean())}


def probe_selection(config: ModelConfig, per_pair: int, seed: int = 0,
                    settings: PartSettings = PartSettings(kmeans_iters=30)) -> Dict[str, float]:
    """Run part selection on ``per_pair`` ego training images per pair with 3 exo images each.

    The images are the data set's own training items for ``seed`` (ego index i with exo
    indices i, i+1, i+2 of the same folder).
    """
    ego_specs = [ItemSpec('trainset', 'egocentric', affordance, name, index)
                 for affordance, name in PAIRS for index in range(per_pair)]
    exo_specs = [ItemSpec('trainset', 'exocentric', spec.affordance, spec.object_name,
                          spec.index + n) for spec in ego_specs for n in range(NUM_EXO)]
    ego, exo = render_specs(ego_specs, seed), render_specs(exo_specs, seed)
    torch.manual_seed(seed)
    grounder, tables = build_grounder_with_tables(config)
    model = SelectiveCLModel(grounder.eval(), tables['person']).eval()
    labels = torch.tensor([config.labels.index(label) for label in ego.labels])
    with torch.inference_mode():
        features = model.compute_frozen_features(
            normalise(ego.images, config.dino_mean, config.dino_std),
            normalise(exo.images, config.dino_mean, config.dino_std))
        s_ego, s_exo, _ = compute_clip_affinities(features, grounder.item_text[labels],
                                                  model.person_text[labels], NUM_EXO,
                                                  grounder.grid)
        batch = len(ego_specs)
        keys_exo = features.keys_exo.reshape(batch, NUM_EXO * grounder.grid ** 2, -1)
        selected = select_exo_descriptors(compute_region_maps(s_exo, s_exo, epoch=0),
                                          NUM_EXO, settings.gamma_exo)
        generator = torch.Generator().manual_seed(seed)
        start = init_centroids_from_points(keys_exo, selected, settings.num_clusters, generator)
        centroids, _ = batched_kmeans(keys_exo, selected, start, settings.kmeans_iters)
        cosine_ego, _ = compute_cluster_maps(features.keys_ego, s_ego, keys_exo,
                                             F.normalize(centroids, dim=-1, eps=1e-12))
        pscores = compute_pscores(cosine_ego, compute_saliency(features.cls_attention_ego))
        enough = selected.sum(dim=1) >= MIN_POINTS
        pscores = torch.where(enough[:, None], pscores, torch.zeros_like(pscores))
        best, accepted = choose_part(pscores, settings.pscore_threshold)
    acting = ego.patch_parts == ego.acting_index[:, None]  # (B, P)
    regions = cluster_regions(cosine_ego)  # (B, K, P)
    ious = region_iou(regions, acting)
    result = score_selection(ious, best, accepted & enough, pscores)
    chosen_region = regions.gather(1, best[:, None, None].expand(-1, 1, regions.shape[2]))[:, 0]
    result['selected_region_patches'] = float(chosen_region.sum(1).float().mean())
    result['selected_region_on_object'] = float(
        ((chosen_region & (ego.patch_parts > 0)).sum(1) / chosen_region.sum(1).clamp(min=1))
        .float().mean())
    result['acting_part_patches'] = float(acting.sum(1).float().mean())
    result['object_patches'] = float((ego.patch_parts > 0).sum(1).float().mean())
    result['selection_samples'] = float(batch)
    result['pscore_histogram'] = np.histogram(pscores.amax(dim=1).numpy(), bins=5,
                                              range=(0.0, 1.0))[0].tolist()
    return result
