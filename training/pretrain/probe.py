r"""Do the backbones do their job? Affinity and part-cluster probes on synthetic test images.

``python -m training.pretrain.probe --config config/model_synthetic.yaml
--baseline config/model_tiny.yaml --per-object 6 --json outputs/probe.json``

* **CLIP affinity** (what the test-time calibration multiplies the CAM with): the min-max
  ClearCLIP cosine with the item prompt of the image's label, upsampled to 224 as at test
  time; mean inside versus outside the GT region (GT >= 0.5), the per-image AUC (chance that a
  GT pixel outscores a non-GT pixel; 0.5 = chance) and how often the peak lands in the GT.
* **DINO key clusters** (what part discovery clusters): k-means on the last-block keys of the
  object's patches with K = number of parts; per part the best-matching cluster's IoU, and
  cluster purity. A spatial control clusters patch coordinates instead, so a backbone that
  only encodes position scores no better than it.
* **CLIP object vs part** (what real CLIP's dense map is: an object-level cue): AUC of the
  object's pixels against the background, and of the acting part against the rest of the
  same object (about 0.5 when the map does not single out the acting part).
* **DINO saliency** (heads 0, 1, 3 of the CLS attention): IoU with the object's patches.
* **Selection** (:mod:`training.pretrain.selection_probe`): does the p-score pick the
  cluster that covers the acting part?

Test images are rendered by :func:`training.synthetic.render_item` for the test split of a
seed (default 0, the benchmark's), exactly as ``python -m training.synthetic`` writes them.
"""

import argparse
import json
from pathlib import Path
import sys
from typing import Dict, List, Optional, Sequence

from affordance_grounding.config import load_model_config, ModelConfig
import numpy as np
import torch
from training.parts import batched_kmeans, init_centroids_from_points
from training.pretrain.probe_inputs import (  # noqa: F401 (majority_per_patch re-exported)
    compute_probe_outputs, majority_per_patch, ProbeImages, render_probe_images)
from training.pretrain.scenes import PATCH
from training.pretrain.selection_probe import probe_selection


def compute_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Probability that a random positive pixel scores above a random negative (ties 1/2)."""
    scores, positive = scores.flatten().double(), positive.flatten()
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()  # last 1-based rank of each distinct value
    ranks = (ends - (counts.double() - 1.0) / 2.0)[inverse]  # tied values share their mean rank
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def probe_affinity(affinity: torch.Tensor, gt: torch.Tensor) -> Dict[str, float]:
    """Inside/outside statistics of (N, S, S) affinity maps against (N, S, S) GT maps."""
    inside, outside, aucs, hits = [], [], [], []
    for image_map, image_gt in zip(affinity, gt):
        region = image_gt >= 0.5
        inside.append(float(image_map[region].mean()))
        outside.append(float(image_map[~region].mean()))
        aucs.append(compute_auc(image_map, region))
        hits.append(float(region.flatten()[image_map.flatten().argmax()]))
    return {'affinity_inside': float(np.mean(inside)), 'affinity_outside': float(np.mean(outside)),
            'affinity_auc': float(np.mean(aucs)), 'affinity_peak_in_gt': float(np.mean(hits))}


def probe_object_and_part(affinity: torch.Tensor, object_mask: torch.Tensor,
                          acting_mask: torch.Tensor) -> Dict[str, float]:
    """Tell an object-level affinity cue (like real CLIP's) from a part-level one.

    Args:
        affinity: (N, S, S) item-prompt affinity maps.
        object_mask: (N, S, S) bool object pixels.
        acting_mask: (N, S, S) bool pixels of the acting part.

    Returns:
        ``object_auc``: mean AUC of object pixels against background pixels (high for a cue
        that finds the object); ``part_auc``: mean AUC of the acting part against the rest of
        the same object (near 0.5 for a cue that does not know which part acts).
    """
    object_aucs, part_aucs = [], []
    for image_map, is_object, is_acting in zip(affinity, object_mask, acting_mask):
        object_aucs.append(compute_auc(image_map, is_object))
        if (is_object & ~is_acting).any():
            part_aucs.append(compute_auc(image_map[is_object], is_acting[is_object]))
    return {'object_auc': float(np.mean(object_aucs)), 'part_auc': float(np.mean(part_aucs))}


def probe_clusters(points: torch.Tensor, patch_parts: torch.Tensor, part_counts: Sequence[int],
                   seed: int = 0) -> Dict[str, float]:
    """k-means (K = parts) on the object patches of each image; best-match IoU and purity."""
    ious, purities = [], []
    generator = torch.Generator().manual_seed(seed)
    for image_points, parts, count in zip(points, patch_parts, part_counts):
        mask = parts > 0  # (P,)
        init = init_centroids_from_points(image_points[None], mask[None], count, generator)
        _, assignment = batched_kmeans(image_points[None].double(), mask[None], init.double(),
                                       num_iters=100)
        assignment, parts = assignment[0][mask], parts[mask]
        for part in parts.unique():
            in_part = parts == part
            ious.append(max(float((in_part & (assignment == k)).sum())
                            / float((in_part | (assignment == k)).sum()) for k in range(count)))
        majority = sum(int(torch.bincount(parts[assignment == k]).max())
                       for k in range(count) if (assignment == k).any())
        purities.append(majority / len(parts))
    return {'part_iou': float(np.mean(ious)), 'cluster_purity': float(np.mean(purities))}


def patch_coordinates(count: int, grid: int) -> torch.Tensor:
    """(count, P, 2) row/column of every patch: the spatial control's 'features'."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing='ij')
    return torch.stack([rows, cols], dim=-1).view(1, grid * grid, 2).float().expand(count, -1, -1)


def probe_backbones(config: ModelConfig, data: ProbeImages, seed: int = 0) -> Dict[str, float]:
    """All probes for one model configuration."""
    outputs = compute_probe_outputs(config, data, seed)
    results = probe_affinity(outputs.affinity, data.gt)
    results.update(probe_object_and_part(outputs.affinity, data.object_mask, data.acting_mask))
    results.update(probe_clusters(outputs.keys, data.patch_parts, data.part_counts, seed))
    is_object = data.patch_parts > 0
    overlap = (outputs.saliency & is_object).sum(1).float()
    results['saliency_iou'] = float((overlap / (outputs.saliency | is_object).sum(1).clamp(
        min=1)).mean())
    return results


def run_probes(configs: Dict[str, str], per_pair: int, seed: int = 0, setting: str = 'Seen',
               selection_per_pair: int = 0) -> Dict[str, dict]:
    """Probe every named config plus the spatial control on the same images.

    ``selection_per_pair`` > 0 adds the selection probe on that many training samples per
    pair (:func:`training.pretrain.selection_probe.probe_selection`).
    """
    data = render_probe_images(per_pair, seed, setting=setting)
    results = {}
    for name, path in configs.items():
        config = load_model_config(path)
        results[name] = probe_backbones(config, data, seed)
        if selection_per_pair:
            results[name].update(probe_selection(config, selection_per_pair, seed))
    grid = data.images.shape[-1] // PATCH
    results['spatial_control'] = probe_clusters(
        patch_coordinates(len(data.labels), grid), data.patch_parts, data.part_counts, seed)
    return {'images': len(data.labels), 'setting': setting, 'results': results}


def format_probe_table(report: Dict[str, dict]) -> str:
    """Markdown table of the probe results, one column per model."""
    names = list(report['results'])
    keys = sorted({key for result in report['results'].values() for key, value in result.items()
                   if isinstance(value, float)})
    lines = ['| probe | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
    for key in keys:
        cells = [f'{report["results"][name][key]:.3f}' if key in report['results'][name]
                 else '-' for name in names]
        lines.append(f'| {key} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the probes, print a table, optionally write JSON; returns an exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='config/model_synthetic.yaml')
    parser.add_argument('--baseline', default='config/model_tiny.yaml',
                        help='random backbones to compare with')
    parser.add_argument('--per-pair', type=int, default=6,
                        help='test images per (affordance, object) pair')
    parser.add_argument('--seed', type=int, default=0, help='synthetic data set seed')
    parser.add_argument('--setting', choices=('Seen', 'Unseen'), default='Seen',
                        help='whose test objects to probe')
    parser.add_argument('--selection-per-pair', type=int, default=4,
                        help='training samples per pair for the selection probe (0 = skip)')
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--sheet', help='write a contact sheet (one image per pair) here')
    args = parser.parse_args(argv)
    report = run_probes({'pretrained': args.config, 'random': args.baseline}, args.per_pair,
                        args.seed, args.setting, args.selection_per_pair)
    print(f'{report["images"]} synthetic test images (seed {args.seed})')
    print(format_probe_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + '\n')
    if args.sheet:
        from training.pretrain.probe_sheet import write_probe_sheet

        configs = {'pretrained': load_model_config(args.config),
                   'random': load_model_config(args.baseline)}
        data = render_probe_images(1, args.seed, setting=args.setting)
        write_probe_sheet(Path(args.sheet), configs, data, list(range(len(data.labels))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
