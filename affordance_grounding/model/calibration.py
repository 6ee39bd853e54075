"""Pure tensor functions for CLIP affinity and test-time calibration (see docs/method.md).

Shared by the inference graph, the exporter and training, so each formula exists once; the
one min-max normalisation of the project (:func:`minmax_last_dim`) lives here too, and the
metrics (numpy) and part discovery call it.
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


def minmax_last_dim(values: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """``(x - min) / (max - min + eps)`` over the last dimension; a constant row becomes 0.

    The one min-max of the project: the reference uses it with eps 0 (test-time CLIP map,
    gamma-2 mask), 1e-10 (evaluation ``normalize_map``, exo regions) and 1e-12 (cluster maps).
    With eps 0 the reference gives NaN on a constant row; here it gives zeros (with eps > 0
    the formula already does), and every other row is computed exactly as the reference.

    Args:
        values: (..., N) values, any float dtype.
        eps: Added to the spread.

    Returns:
        (..., N) values in [0, 1], same dtype.
    """
    low = values.amin(dim=-1, keepdim=True)
    spread = values.amax(dim=-1, keepdim=True) - low
    varies = spread > 0
    safe_spread = torch.where(varies, spread + eps, torch.ones_like(spread))
    return torch.where(varies, (values - low) / safe_spread, torch.zeros_like(values))


def minmax_per_map(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each (G, G) map to [0, 1] without an epsilon (a constant map -> 0).

    Args:
        maps: (N, K, G, G) maps.

    Returns:
        (N, K, G, G) maps in [0, 1].
    """
    return minmax_last_dim(maps.flatten(2)).view_as(maps)  # over (N, K, G*G)


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
    return minmax_last_dim(upsampled.flatten(2), eps=1e-10).view_as(upsampled)  # (N, K, size^2)
