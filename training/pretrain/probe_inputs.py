"""Probe images rendered with their ground truth, and the backbone outputs the probes read.

Shared by the probes (:mod:`training.pretrain.probe`), the selection probe
(:mod:`training.pretrain.selection_probe`) and the probe contact sheet
(:mod:`training.pretrain.probe_sheet`), so none of them imports another.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

from affordance_grounding.config import ModelConfig
from affordance_grounding.model.calibration import upsample_and_normalize
from affordance_grounding.model.factory import build_grounder
from affordance_grounding.model.saliency import compute_saliency
import cv2
import numpy as np
from PIL import Image
import torch
from training.pretrain.scenes import normalise, PAIRS, PATCH, UNSEEN_PAIRS
from training.synthetic import find_object, ItemSpec, render_item, RenderedItem, SyntheticConfig

OBJECT_THRESHOLD = 0.5  # a patch belongs to the object when half its pixels do


@dataclass
class ProbeImages:
    """Rendered images with their ground truth at network resolution.

    Attributes:
        images: (N, 3, S, S) float32 in [0, 1].
        labels: Affordance label of each image.
        gt: (N, S, S) float32 GT heat maps in [0, 1] (zeros for exocentric images).
        patch_parts: (N, P) int64 majority part index per patch (0 = background, i + 1 =
            i-th part of the image's object).
        part_counts: Number of parts of each image's object.
        object_mask: (N, S, S) bool object pixels.
        acting_mask: (N, S, S) bool pixels of the part the label acts on.
        acting_index: (N,) int64 part index (1-based, as in ``patch_parts``) of that part.
    """

    images: torch.Tensor
    labels: List[str]
    gt: torch.Tensor
    patch_parts: torch.Tensor
    part_counts: List[int]
    object_mask: torch.Tensor
    acting_mask: torch.Tensor
    acting_index: torch.Tensor


def probe_pairs(setting: str = 'Seen') -> Tuple[Tuple[str, str], ...]:
    """(affordance, object) pairs of a setting's test set."""
    return PAIRS if setting == 'Seen' else UNSEEN_PAIRS


def render_probe_images(per_pair: int, seed: int = 0, size: int = 224,
                        setting: str = 'Seen') -> ProbeImages:
    """Render ``per_pair`` test images per pair of a setting, read as the data set does."""
    specs = [ItemSpec('testset', 'egocentric', affordance, name, index, setting)
             for affordance, name in probe_pairs(setting) for index in range(per_pair)]
    return render_specs(specs, seed, size)


def render_specs(specs: Sequence[ItemSpec], seed: int = 0, size: int = 224) -> ProbeImages:
    """Render any items (train or test, ego or exo) with their masks at ``size``."""
    config = SyntheticConfig(seed=seed)
    rendered = [(spec, render_item(config, spec)) for spec in specs]
    columns = [_probe_columns(spec, item, size) for spec, item in rendered]
    stacked = [torch.from_numpy(np.stack([column[k] for column in columns]))
               for k in range(5)]
    return ProbeImages(images=stacked[0].permute(0, 3, 1, 2), labels=[s.affordance for s in specs],
                       gt=stacked[1], patch_parts=stacked[2],
                       part_counts=[len(find_object(s.object_name).parts) for s in specs],
                       object_mask=stacked[3] > 0, acting_mask=stacked[4] == 1,
                       acting_index=torch.tensor([
                           [p.name for p in find_object(s.object_name).parts].index(
                               item.acting_part) + 1 for s, item in rendered]))


def _probe_columns(spec: ItemSpec, item: RenderedItem, size: int) -> tuple:
    """Image, GT, patch parts, object mask and acting mask of one item at ``size``."""
    rgb = Image.fromarray(np.ascontiguousarray(item.image_bgr[..., ::-1]))
    image = np.asarray(rgb.resize((size, size), Image.BILINEAR), np.float32) / 255
    raw_gt = item.gt if item.gt is not None else np.zeros(item.image_bgr.shape[:2], np.uint8)
    gt = cv2.resize(raw_gt / 255.0, (size, size), interpolation=cv2.INTER_LINEAR)
    parts = find_object(spec.object_name).parts
    ids = np.zeros(item.image_bgr.shape[:2], np.uint8)
    for part_index, part in enumerate(parts, start=1):
        ids[item.part_masks[part.name]] = part_index
    ids = cv2.resize(ids, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    acting = [part.name for part in parts].index(item.acting_part) + 1
    acting_map = np.where(ids == acting, 1, np.where(ids > 0, 2, 0))  # 1 acting, 2 rest
    return (image, gt.astype(np.float32), majority_per_patch(ids, len(parts) + 1),
            (ids > 0).astype(np.uint8), acting_map.astype(np.uint8))


def majority_per_patch(ids: np.ndarray, num_ids: int) -> np.ndarray:
    """Reduce (S, S) part ids to a (P,) part index per patch.

    A patch takes its most frequent part when the object covers at least half of it, else 0.
    """
    grid = ids.shape[0] // PATCH
    blocks = ids.reshape(grid, PATCH, grid, PATCH).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
    counts = np.stack([(blocks == k).sum(axis=1) for k in range(num_ids)], axis=1)  # (P, I)
    is_object = counts[:, 1:].sum(axis=1) >= OBJECT_THRESHOLD * blocks.shape[1]
    return np.where(is_object, counts[:, 1:].argmax(axis=1) + 1, 0)


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
