"""DINO saliency ("SAM" map) from the last block's CLS attention (see docs/method.md, "Model")."""

from typing import Sequence

from affordance_grounding.model.calibration import minmax_last_dim
import torch

SALIENCY_HEADS: Sequence[int] = (0, 1, 3)


def compute_saliency(cls_attention: torch.Tensor,
                     heads: Sequence[int] = SALIENCY_HEADS) -> torch.Tensor:
    """Binary object-saliency mask from CLS-to-patch attention.

    Per head the attention is binarised at its spatial mean (strict >), the chosen heads are
    averaged, min-max normalised per image (eps 1e-15) and binarised at their mean (strict >).

    Args:
        cls_attention: (N, heads, P) attention of the class token to the P patches.
        heads: Head indices averaged (the reference uses heads 0, 1 and 3 of 6).

    Returns:
        (N, P) float mask with values 0 or 1.
    """
    chosen = cls_attention[:, list(heads)]  # (N, h', P)
    votes = (chosen > chosen.mean(dim=2, keepdim=True)).float()  # (N, h', P)
    saliency = votes.mean(dim=1)  # (N, P), values in {0, 1/h', ..., 1}
    saliency = minmax_last_dim(saliency, eps=1e-15)  # (N, P) in [0, 1]
    return (saliency > saliency.mean(dim=1, keepdim=True)).float()
