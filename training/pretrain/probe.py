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
* **DINO saliency** (heads 0, 1, 3 of the CLS attention): IoU with the object's patches.

Test images are rendered by :func:`training.synthetic.render_item` for the test split of a
seed (default 0, the benchmark's), exactly as ``python -m training.synthetic`` writes them.
"""

import argparse
from dataclasses import dataclass
import json
from pathlib import Path
import sys
from typing import Dict, List, Optional, Sequence

from affordance_grounding.config import load_model_config, ModelConfig
from affordance_grounding.model.calibration import upsample_and_normalize
from affordance_grounding.model.factory import build_grounder
from affordance_grounding.model.saliency import compute_saliency
import cv2
import numpy as np
from PIL import Image
import torch
from training.parts import batched_kmeans, init_centroids_from_points
from training.pretrain.scenes import normalise, PAIRS, PATCH
from training.synthetic import ItemSpec, OBJECTS, render_item, SyntheticConfig

OBJECT_THRESHOLD = 0.5  # a patch belongs to the object when half its pixels do


@dataclass
class ProbeImages:
    """Rendered test images with their ground truth at network resolution.

    Attributes:
        images: (N, 3, S, S) float32 in [0, 1].
        labels: Affordance label of each image.
        gt: (N, S, S) float32 GT heat maps in [0, 1].
        patch_parts: (N, P) int64 majority part index per patch (0 = background, i + 1 =
            i-th part of the image's object).
        part_counts: Number of parts of each image's object.
    """

    images: torch.Tensor
    labels: List[str]
    gt: torch.Tensor
    patch_parts: torch.Tensor
    part_counts: List[int]


def render_probe_images(per_pair: int, seed: int = 0, size: int = 224) -> ProbeImages:
    """Render ``per_pair`` test images per (affordance, object) pair, read as the data set does."""
    config = SyntheticConfig(seed=seed)
    images, labels, gts, patch_parts, part_counts = [], [], [], [], []
    for affordance, name in PAIRS:
        for index in range(per_pair):
            item = render_item(config, ItemSpec('testset', 'egocentric', affordance, name, index))
            rgb = Image.fromarray(np.ascontiguousarray(item.image_bgr[..., ::-1]))
            images.append(np.asarray(rgb.resize((size, size), Image.BILINEAR), np.float32) / 255)
            gts.append(cv2.resize(item.gt / 255.0, (size, size),
                                  interpolation=cv2.INTER_LINEAR).astype(np.float32))
            ids = np.zeros(item.gt.shape, np.int64)
            for part_index, part in enumerate(OBJECTS[name].parts, start=1):
                ids[item.part_masks[part.name]] = part_index
            ids = cv2.resize(ids.astype(np.uint8), (size, size),
                             interpolation=cv2.INTER_NEAREST).astype(np.int64)
            patch_parts.append(majority_per_patch(ids, len(OBJECTS[name].parts) + 1))
            labels.append(affordance)
            part_counts.append(len(OBJECTS[name].parts))
    return ProbeImages(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), labels,
                       torch.from_numpy(np.stack(gts)), torch.from_numpy(np.stack(patch_parts)),
                       part_counts)


def majority_per_patch(ids: np.ndarray, num_ids: int) -> np.ndarray:
    """Reduce (S, S) part ids to a (P,) part index per patch.

    A patch takes its most frequent part when the object covers at least half of it, else 0.
    """
    grid = ids.shape[0] // PATCH
    blocks = ids.reshape(grid, PATCH, grid, PATCH).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
    counts = np.stack([(blocks == k).sum(axis=1) for k in range(num_ids)], axis=1)  # (P, I)
    is_object = counts[:, 1:].sum(axis=1) >= OBJECT_THRESHOLD * blocks.shape[1]
    return np.where(is_object, counts[:, 1:].argmax(axis=1) + 1, 0)


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


@dataclass
class ProbeOutputs:
    """Backbone outputs on the probe images.

    Attributes:
        affinity: (N, S, S) min-max affinity of each image's item prompt, upsampled.
        keys: (N, P, D) DINO last-block keys.
        saliency: (N, P) bool DINO saliency (heads 0, 1, 3).
    """

    affinity: torch.Tensor
    keys: torch.Tensor
    saliency: torch.Tensor


def compute_probe_outputs(config: ModelConfig, data: ProbeImages, seed: int = 0) -> ProbeOutputs:
    """Run a model's backbones on the probe images (its head is irrelevant, left random)."""
    torch.manual_seed(seed)
    grounder = build_grounder(config).eval()
    images = normalise(data.images, config.dino_mean, config.dino_std)
    label_index = torch.tensor([config.labels.index(label) for label in data.labels])
    with torch.inference_mode():
        features = grounder.forward_features(images)
        maps = grounder.forward_head(features, label_index)
        affinity = upsample_and_normalize(maps.affinity, config.image_size)[:, 0]  # (N, S, S)
        _, attention = grounder.dino.forward_with_attention(images)
    return ProbeOutputs(affinity, features.dino_keys, compute_saliency(attention) > 0)


def probe_backbones(config: ModelConfig, data: ProbeImages, seed: int = 0) -> Dict[str, float]:
    """All probes for one model configuration."""
    outputs = compute_probe_outputs(config, data, seed)
    results = probe_affinity(outputs.affinity, data.gt)
    results.update(probe_clusters(outputs.keys, data.patch_parts, data.part_counts, seed))
    is_object = data.patch_parts > 0
    overlap = (outputs.saliency & is_object).sum(1).float()
    results['saliency_iou'] = float((overlap / (outputs.saliency | is_object).sum(1).clamp(
        min=1)).mean())
    return results


def run_probes(configs: Dict[str, str], per_pair: int, seed: int = 0) -> Dict[str, dict]:
    """Probe every named config plus the spatial control on the same images."""
    data = render_probe_images(per_pair, seed)
    results = {name: probe_backbones(load_model_config(path), data, seed)
               for name, path in configs.items()}
    grid = data.images.shape[-1] // PATCH
    results['spatial_control'] = probe_clusters(
        patch_coordinates(len(data.labels), grid), data.patch_parts, data.part_counts, seed)
    return {'images': len(data.labels), 'results': results}


def format_probe_table(report: Dict[str, dict]) -> str:
    """Markdown table of the probe results, one column per model."""
    names = list(report['results'])
    keys = sorted({key for result in report['results'].values() for key in result})
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
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--sheet', help='write a contact sheet (one image per pair) here')
    args = parser.parse_args(argv)
    report = run_probes({'pretrained': args.config, 'random': args.baseline}, args.per_pair,
                        args.seed)
    print(f'{report["images"]} synthetic test images (seed {args.seed})')
    print(format_probe_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + '\n')
    if args.sheet:
        from training.pretrain.probe_sheet import write_probe_sheet

        configs = {'pretrained': load_model_config(args.config),
                   'random': load_model_config(args.baseline)}
        data = render_probe_images(1, args.seed)
        write_probe_sheet(Path(args.sheet), configs, data, list(range(len(data.labels))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
