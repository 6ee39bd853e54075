"""The trainable affordance head used at inference: aff_proj MLP, ego conv stack, classifier.

Sub-module names (``aff_proj.norm/fc1/fc2``, ``aff_ego_proj.0..5``, ``aff_classifier``) match
the released SelectiveCL state dicts so that importing them is a key filter, not a rename.
"""

import torch
from torch import nn


class ProjectionMLP(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear, without a residual (LOCATE had one)."""

    def __init__(self, width: int, hidden: int):
        """Create the MLP for ``width``-channel descriptors with a ``hidden``-wide layer."""
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-5)
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        """Map (..., width) descriptors to (..., width) features."""
        return self.fc2(self.act(self.fc1(self.norm(descriptors))))


def build_conv_stack(width: int) -> nn.Sequential:
    """Two [3x3 conv (bias, pad 1) -> BatchNorm -> ReLU] layers at constant width."""
    return nn.Sequential(
        nn.Conv2d(width, width, kernel_size=3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, kernel_size=3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    )


class AffordanceHead(nn.Module):
    """DINO keys -> class activation maps for the egocentric view.

    Training adds an exocentric conv stack and two contrastive projections around this head;
    inference needs only what is here.
    """

    def __init__(self, width: int, num_classes: int, hidden_ratio: int = 4):
        """Create the head.

        Args:
            width: DINO descriptor width (384 for ViT-S/16).
            num_classes: Number of affordance labels.
            hidden_ratio: aff_proj hidden width as a multiple of ``width``.
        """
        super().__init__()
        self.width = width
        self.num_classes = num_classes
        self.aff_proj = ProjectionMLP(width, width * hidden_ratio)
        self.aff_ego_proj = build_conv_stack(width)
        self.aff_classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def project_descriptors(self, descriptors: torch.Tensor, grid: int) -> torch.Tensor:
        """Apply aff_proj to (N, P, D) descriptors and lay them out as (N, D, grid, grid)."""
        batch, patches, width = descriptors.shape
        features = self.aff_proj(descriptors)  # (N, P, D)
        return features.transpose(1, 2).reshape(batch, width, grid, grid)  # (N, D, G, G)

    def forward(self, descriptors: torch.Tensor, grid: int) -> torch.Tensor:
        """Compute class activation maps.

        Args:
            descriptors: (N, P, D) DINO key descriptors, P = grid * grid, row-major patches.
            grid: Patch grid side (14 at 224 px).

        Returns:
            (N, C, grid, grid) raw class activation maps (logits, may be negative).
        """
        features = self.project_descriptors(descriptors, grid)  # (N, D, G, G)
        return self.aff_classifier(self.aff_ego_proj(features))  # (N, C, G, G)
