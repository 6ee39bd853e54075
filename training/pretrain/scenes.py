"""An in-memory pool of synthetic scenes with per-pixel part labels, captions and crops.

The pool is drawn with :func:`training.synthetic.render_item` under its own root seed, so no
pretraining image coincides with an image of a data set built with another seed (the
benchmark uses seed 0). It holds the Unseen object kinds too: the backbones stand for
web-pretrained CLIP and DINO, which have seen cleavers and mugs; only the grounding head
never sees them (see docs/ablation.md). Every pixel carries a global part id (0 =
background, then one id per ``(object, part)`` pair), from which patch-level part
fractions are computed after cropping.
"""

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from training.synthetic import (
    AFFORDANCE_PARTS, find_object, ItemSpec, OBJECTS, render_item, SyntheticConfig,
    UNSEEN_AFFORDANCE_PARTS, UNSEEN_OBJECTS, VIEWS)

RENDER_SIZE = 256  # rendered side; 224 crops at patch-aligned offsets leave 0..2 patches
PATCH = 16
OBJECT_NAMES: Tuple[str, ...] = tuple(sorted(OBJECTS)) + tuple(sorted(UNSEEN_OBJECTS))
# Global part ids: 0 = background, i + 1 = PART_KEYS[i].
PART_KEYS: Tuple[Tuple[str, str], ...] = tuple(
    (name, part.name) for name in OBJECT_NAMES for part in find_object(name).parts)
PAIRS: Tuple[Tuple[str, str], ...] = tuple(
    (affordance, name) for affordance in sorted(AFFORDANCE_PARTS)
    for name in sorted(AFFORDANCE_PARTS[affordance]))
UNSEEN_PAIRS: Tuple[Tuple[str, str], ...] = tuple(
    (affordance, name) for affordance in sorted(UNSEEN_AFFORDANCE_PARTS)
    for name in sorted(UNSEEN_AFFORDANCE_PARTS[affordance]))


@dataclass
class ScenePool:
    """Rendered scenes kept in memory.

    Attributes:
        images: (N, S, S, 3) uint8 RGB images, S = RENDER_SIZE.
        part_ids: (N, S, S) uint8 global part id per pixel (0 = background).
        object_ids: (N,) int64 index into OBJECT_NAMES.
        is_exo: (N,) bool, True for images with a drawn actor.
    """

    images: np.ndarray
    part_ids: np.ndarray
    object_ids: np.ndarray
    is_exo: np.ndarray

    def __len__(self) -> int:
        """Return the number of scenes."""
        return len(self.images)


def render_pool(count: int, seed: int) -> ScenePool:
    """Render ``count`` scenes, cycling over all (affordance, object) pairs and both views.

    Args:
        count: Number of scenes.
        seed: Root seed of the generator (use one no benchmark data set uses).

    Returns:
        The pool.
    """
    config = SyntheticConfig(seed=seed, image_size=RENDER_SIZE)
    images = np.zeros((count, RENDER_SIZE, RENDER_SIZE, 3), np.uint8)
    part_ids = np.zeros((count, RENDER_SIZE, RENDER_SIZE), np.uint8)
    object_ids = np.zeros(count, np.int64)
    is_exo = np.zeros(count, bool)
    for index in range(count):
        pairs = PAIRS + UNSEEN_PAIRS
        affordance, name = pairs[index % len(pairs)]
        view = VIEWS[(index // len(pairs)) % len(VIEWS)]
        rendered = render_item(config, ItemSpec('trainset', view, affordance, name, index))
        images[index] = rendered.image_bgr[..., ::-1]
        for part_name, mask in rendered.part_masks.items():
            part_ids[index][mask] = PART_KEYS.index((name, part_name)) + 1
        object_ids[index] = OBJECT_NAMES.index(name)
        is_exo[index] = view == 'exocentric'
    return ScenePool(images, part_ids, object_ids, is_exo)


@dataclass
class CropBatch:
    """Patch-aligned crops of pool scenes.

    Attributes:
        images: (B, 3, C, C) float32 in [0, 1] (not normalised).
        part_ids: (B, C, C) int64 global part ids.
        cells: (B, P) int64 cell index of every token in the scene's 16 x 16 patch grid
            (row-major), so tokens of two crops of one scene can be matched.
    """

    images: torch.Tensor
    part_ids: torch.Tensor
    cells: torch.Tensor


def crop_scenes(pool: ScenePool, indices: np.ndarray, crop: int,
                rng: np.random.Generator) -> CropBatch:
    """Cut one random patch-aligned ``crop`` x ``crop`` window per scene, flipped with p = 0.5.

    Args:
        pool: Scene pool.
        indices: (B,) scene indices.
        crop: Crop side in pixels (a multiple of 16, at most RENDER_SIZE).
        rng: Random source.

    Returns:
        The crops with their part ids and token cells.
    """
    grid, cells_per_side = crop // PATCH, RENDER_SIZE // PATCH
    images, part_ids, cells = [], [], []
    rows, cols = np.divmod(np.arange(grid * grid), grid)  # (P,) token row and column
    for index in indices:
        top, left = rng.integers(0, cells_per_side - grid + 1, 2)
        flip = bool(rng.random() < 0.5)
        window = np.s_[top * PATCH:(top + grid) * PATCH, left * PATCH:(left + grid) * PATCH]
        image, ids = pool.images[index][window], pool.part_ids[index][window]
        scene_cols = left + (grid - 1 - cols if flip else cols)  # (P,)
        if flip:
            image, ids = image[:, ::-1], ids[:, ::-1]
        images.append(np.ascontiguousarray(image))
        part_ids.append(np.ascontiguousarray(ids))
        cells.append((top + rows) * cells_per_side + scene_cols)
    images_t = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return CropBatch(images=images_t, part_ids=torch.from_numpy(np.stack(part_ids)).long(),
                     cells=torch.from_numpy(np.stack(cells)).long())


def resize_scenes(pool: ScenePool, indices: np.ndarray, size: int) -> CropBatch:
    """Whole scenes resized to ``size`` (the test-time view: aspect kept, no crop).

    Returns:
        Resized images (bilinear, antialiased), nearest-resized part ids; ``cells`` is -1.
    """
    images = torch.from_numpy(pool.images[indices]).permute(0, 3, 1, 2).float() / 255.0
    images = F.interpolate(images, size=(size, size), mode='bilinear', antialias=True,
                           align_corners=False)
    ids = torch.from_numpy(pool.part_ids[indices]).long()[:, None].float()
    ids = F.interpolate(ids, size=(size, size), mode='nearest')[:, 0].long()
    grid = size // PATCH
    return CropBatch(images=images.clamp(0, 1), part_ids=ids,
                     cells=torch.full((len(indices), grid * grid), -1, dtype=torch.long))


def patch_part_fractions(part_ids: torch.Tensor, num_ids: int) -> torch.Tensor:
    """Share of every part id inside every 16 x 16 patch.

    Args:
        part_ids: (B, H, W) int64 global part ids.
        num_ids: Number of ids (background included).

    Returns:
        (B, P, num_ids) float32 fractions summing to 1 per patch, P row-major.
    """
    one_hot = torch.stack([part_ids == index for index in range(num_ids)], dim=1)  # (B,I,H,W)
    fractions = F.avg_pool2d(one_hot.float(), PATCH)  # (B, I, G, G)
    return fractions.flatten(2).transpose(1, 2)  # (B, P, I)


def match_tokens(cells_a: torch.Tensor, cells_b: torch.Tensor) -> torch.Tensor:
    """For each token of crop a, the token of crop b covering the same scene cell.

    Args:
        cells_a: (B, Pa) scene cells of crop a's tokens.
        cells_b: (B, Pb) scene cells of crop b's tokens.

    Returns:
        (B, Pa) int64 token index into crop b, -1 where crop b does not cover the cell.
    """
    batch, tokens_b = cells_b.shape
    cells_per_scene = (RENDER_SIZE // PATCH) ** 2
    token_at_cell = torch.full((batch, cells_per_scene), -1, dtype=torch.long)
    token_at_cell.scatter_(1, cells_b, torch.arange(tokens_b).expand(batch, -1))
    return token_at_cell.gather(1, cells_a)


def jitter_colours(images: torch.Tensor, generator: torch.Generator,
                   strength: float = 0.4) -> torch.Tensor:
    """Random brightness, contrast, saturation and grey-scale (p = 0.2) per image.

    Args:
        images: (B, 3, H, W) in [0, 1].
        generator: Random source.
        strength: Maximum relative change of each factor.

    Returns:
        (B, 3, H, W) jittered images in [0, 1].
    """
    batch = images.shape[0]

    def factor() -> torch.Tensor:
        return 1.0 + strength * (2 * torch.rand(batch, 1, 1, 1, generator=generator) - 1)

    grey = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    images = images * factor()  # brightness
    mean = grey.mean(dim=(2, 3), keepdim=True)
    images = (images - mean) * factor() + mean  # contrast
    grey = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    images = (images - grey) * factor() + grey  # saturation
    to_grey = torch.rand(batch, 1, 1, 1, generator=generator) < 0.2
    images = torch.where(to_grey, grey.expand_as(images), images)
    return images.clamp(0.0, 1.0)


def normalise(images: torch.Tensor, mean: List[float], std: List[float]) -> torch.Tensor:
    """(B, 3, H, W) [0, 1] images -> normalised with per-channel mean and std."""
    mean_t = torch.tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean_t) / std_t
