"""Contact sheet of the backbone probes: what the affinity, the clusters and the saliency see."""

from pathlib import Path
from typing import Dict, Sequence

from affordance_grounding.config import ModelConfig
from affordance_grounding.perception.postprocess import render_overlay
import cv2
import numpy as np
import torch
from training.parts import batched_kmeans, init_centroids_from_points
from training.pretrain.probe_inputs import compute_probe_outputs, ProbeImages

CLUSTER_COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                            [245, 130, 48]], np.uint8)  # RGB


def cluster_whole_image(keys: torch.Tensor, clusters: int, seed: int = 0) -> torch.Tensor:
    """k-means of all patches of each image: (N, P, D) -> (N, P) cluster index."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(keys.shape[:2], dtype=torch.bool)
    init = init_centroids_from_points(keys, mask, clusters, generator)
    return batched_kmeans(keys.double(), mask, init.double(), num_iters=100)[1]


def render_labels(rgb: np.ndarray, labels: np.ndarray, title: str) -> np.ndarray:
    """Blend a (G, G) label grid, nearest-upsampled, onto the image; returns BGR."""
    size = rgb.shape[0]
    colours = CLUSTER_COLOURS[labels % len(CLUSTER_COLOURS)]  # (G, G, 3)
    colours = cv2.resize(colours, (size, size), interpolation=cv2.INTER_NEAREST)
    blended = cv2.addWeighted(rgb, 0.4, colours, 0.6, 0.0)
    return render_overlay(blended, np.zeros((size, size), np.float32), title, alpha=0.0)


def write_probe_sheet(path: Path, configs: Dict[str, ModelConfig], data: ProbeImages,
                      rows: Sequence[int], tile: int = 160) -> Path:
    """One row per image: input, per model the prompt affinity, 4-means clusters, saliency.

    Args:
        path: PNG to write.
        configs: Model name -> configuration.
        data: Probe images.
        rows: Image indices to show.
        tile: Tile side in pixels.

    Returns:
        ``path``.
    """
    outputs = {name: compute_probe_outputs(config, data) for name, config in configs.items()}
    clusters = {name: cluster_whole_image(out.keys[list(rows)], 4)
                for name, out in outputs.items()}
    grid = int(round(data.patch_parts.shape[1] ** 0.5))
    lines = []
    for position, index in enumerate(rows):
        rgb = (data.images[index].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        rgb = cv2.resize(rgb, (tile, tile), interpolation=cv2.INTER_AREA)
        tiles = [render_overlay(rgb, cv2.resize(data.gt[index].numpy(), (tile, tile)),
                                f'GT {data.labels[index]}')]
        for name, out in outputs.items():
            heat = cv2.resize(out.affinity[index].numpy(), (tile, tile))
            tiles.append(render_overlay(rgb, heat, f'{name}: CLIP'))
            labels = clusters[name][position].view(grid, grid).numpy()
            tiles.append(render_labels(rgb, labels, f'{name}: k=4'))
            salient = out.saliency[index].view(grid, grid).float().numpy()
            tiles.append(render_overlay(rgb, cv2.resize(salient, (tile, tile),
                                                        interpolation=cv2.INTER_NEAREST),
                                        f'{name}: saliency'))
        lines.append(np.concatenate(tiles, axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(lines, axis=0))
    return path
