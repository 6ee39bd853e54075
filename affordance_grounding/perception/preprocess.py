"""Image preprocessing equal to the method's test transform (see docs/method.md, "Data").

Resize to a square without keeping the aspect ratio (bilinear, antialiased like PIL, on uint8
pixels like PIL), scale to [0, 1], normalise per channel. Done with one torch interpolate so it
is vectorised and can write into a reusable buffer. The PIL version in
``training.transforms`` is kept apart on purpose (robots do not install training code); a test
holds the two equal.
"""

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F


class ImagePreprocessor:
    """Turn uint8 RGB images into normalised network input."""

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]):
        """Create the preprocessor.

        Args:
            image_size: Square network input side in pixels.
            mean: Per-channel mean of [0, 1] RGB (ImageNet for SelectiveCL).
            std: Per-channel standard deviation.
        """
        self.image_size = image_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, rgb: np.ndarray, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Preprocess one image.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            out: Optional (1, 3, S, S) float32 tensor to write into (avoids an allocation).

        Returns:
            (1, 3, S, S) float32 tensor.

        Raises:
            ValueError: If the image is not (H, W, 3) uint8 with H, W > 0.
        """
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
            raise ValueError(f'expected an (H, W, 3) uint8 RGB image, got shape {rgb.shape} '
                             f'dtype {rgb.dtype}')
        pixels = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]  # (1,3,H,W)
        # uint8 in, uint8 out, like PIL: torch has a vectorised kernel for channels-last
        # uint8 antialiased bilinear (about 20x faster than the float path on 640x480).
        resized = F.interpolate(pixels, size=(self.image_size, self.image_size),
                                mode='bilinear', align_corners=False, antialias=True)
        normalised = resized.float().div_(255.0).sub_(self.mean).div_(self.std)  # (1,3,S,S)
        if out is None:
            return normalised
        return out.copy_(normalised)
