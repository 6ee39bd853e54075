"""Pure tensor functions for CLIP affinity and test-time calibration (METHOD.md 3.2, 5.1, 5.3).

Shared by the inference graph, the exporter and training, so each formula exists once.
"""

import torch
import torch.nn.functional as F


def local_mean_3x3(maps: torch.Tensor) -> torch.Tensor:
    """3x3 mean over valid neighbours only (border pixels average 4 or 6 values).

    Args:
        maps: (N, K, G, G) maps.

    Returns:
        (N, K, G, G) locally averaged maps.
    """
    return F.avg_pool2d(maps, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def minmax_per_map(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each (G, G) map to [0, 1] without an epsilon.

    The reference divides by (max - min) with no epsilon, which gives NaN on a constant map;
    here a constant map becomes all zeros and every other map is unchanged.

    Args:
        maps: (N, K, G, G) maps.

    Returns:
        (N, K, G, G) maps in [0, 1].
    """
    flat = maps.flatten(2)  # (N, K, G*G)
    low = flat.amin(dim=2, keepdim=True)
    spread = flat.amax(dim=2, keepdim=True) - low
    safe_spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    normalised = torch.where(spread > 0, (flat - low) / safe_spread, torch.zeros_like(flat))
    return normalised.view_as(maps)


def cosine_affinity(patch_features: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between every patch and every text embedding.

    Args:
        patch_features: (N, P, E) dense CLIP patch features.
        text_embeddings: (K, E) shared by the batch, or (N, K, E) per image.

    Returns:
        (N, K, P) cosines in [-1, 1] (both sides L2-normalised with eps 1e-12).
    """
    patches = F.normalize(patch_features, dim=-1, eps=1e-12)  # (N, P, E)
    texts = F.normalize(text_embeddings, dim=-1, eps=1e-12)  # (K, E) or (N, K, E)
    return torch.matmul(texts, patches.transpose(-2, -1))  # (N, K, P)


def upsample_and_normalize(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear upsample (align_corners=False, no antialias) then min-max with eps 1e-10.

    Equals the reference ``normalize_map`` (``cv2.resize`` INTER_LINEAR then min-max).

    Args:
        maps: (N, K, G, G) maps.
        size: Output side in pixels.

    Returns:
        (N, K, size, size) float maps in [0, 1].
    """
    upsampled = F.interpolate(maps, size=(size, size), mode='bilinear', align_corners=False)
    flat = upsampled.flatten(2)  # (N, K, size*size)
    low = flat.amin(dim=2, keepdim=True)
    high = flat.amax(dim=2, keepdim=True)
    return ((flat - low) / (high - low + 1e-10)).view_as(upsampled)
