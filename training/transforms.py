"""The training and test image transforms of the method (docs/method.md, "Data").

PIL-based, as the reference. The runtime has its own torch resize
(``affordance_grounding.perception.preprocess``): robots do not install this module, and the
runtime's version is vectorised and writes into a reusable buffer. The two are kept apart on
purpose and a test holds the runtime's output equal to :func:`test_transform`'s.
"""

import random

import numpy as np
from PIL import Image
import torch
from torchvision.transforms import functional as TF

from training.data_layout import DatasetLayout


def to_normalised_tensor(image: Image.Image, layout: DatasetLayout) -> torch.Tensor:
    """PIL RGB image -> (3, H, W) float32, normalised with the layout's mean/std (docs/method.md).

    The same float32 operations as ``to_tensor`` + ``normalize`` (x / 255, then (x - mean) /
    std), done in NumPy so the main process does not pay torch's intra-op threading per image.
    """
    array = np.asarray(image, dtype=np.float32) / np.float32(255)  # (H, W, 3) in [0, 1]
    mean = np.asarray(layout.mean, np.float32)
    std = np.asarray(layout.std, np.float32)
    array = (array - mean) / std  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))  # (3, H, W)


def train_transform(image: Image.Image, layout: DatasetLayout,
                    rng: random.Random) -> torch.Tensor:
    """Shorter side to ``resize`` (bilinear), random S x S crop, flip p = 0.5, normalise.

    Returns:
        (3, S, S) float32 tensor.
    """
    image = TF.resize(image, layout.resize, interpolation=TF.InterpolationMode.BILINEAR)
    width, height = image.size
    size = layout.image_size
    top, left = rng.randint(0, height - size), rng.randint(0, width - size)
    image = TF.crop(image, top, left, size, size)
    if rng.random() < 0.5:
        image = TF.hflip(image)
    return to_normalised_tensor(image, layout)


def test_transform(image: Image.Image, layout: DatasetLayout) -> torch.Tensor:
    """Resize to exactly S x S (aspect not kept, PIL bilinear), to tensor, normalise."""
    size = layout.image_size
    return to_normalised_tensor(image.resize((size, size), Image.BILINEAR), layout)
