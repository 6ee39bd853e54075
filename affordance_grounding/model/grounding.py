"""The inference network: frozen backbones -> features; head + calibration -> maps.

Split like timm's ``forward_features`` / ``forward_head`` so the runtime can cache features
and the exporter can trace one graph.
"""

from dataclasses import dataclass
from typing import Optional

from affordance_grounding.config import CALIBRATIONS, ModelConfig
from affordance_grounding.model.backbones import ClipDenseEncoder, DinoKeyEncoder
from affordance_grounding.model.calibration import (
    cosine_affinity, local_mean_3x3, minmax_per_map, upsample_and_normalize)
from affordance_grounding.model.head import AffordanceHead
import torch
from torch import nn


@dataclass
class BackboneFeatures:
    """Frozen-backbone outputs for a batch of images.

    Attributes:
        clip_tokens: (N, P, E) ClearCLIP dense patch features, not normalised.
        dino_keys: (N, P, D) DINO last-block keys, channel index d*heads + h.
    """

    clip_tokens: torch.Tensor
    dino_keys: torch.Tensor


@dataclass
class GroundingMaps:
    """The three test-time maps plus the min-max CLIP affinity (docs/method.md, "Inference").

    All are (N, K, G, G) float tensors; K is the number of classes in all-class mode or 1 when a
    class was requested per image.

    Attributes:
        cam: Raw class activation map (map 1; may be negative).
        affinity: Min-max normalised CLIP patch-prompt cosine, in [0, 1].
        calibrated: affinity * cam (map 2, the paper's headline output).
        calibrated_local_mean: affinity * 3x3-local-mean(cam) (map 3).
    """

    cam: torch.Tensor
    affinity: torch.Tensor
    calibrated: torch.Tensor
    calibrated_local_mean: torch.Tensor

    def select(self, calibration: str) -> torch.Tensor:
        """Return the map for a calibration name (``none``, ``clip``, ``clip_local_mean``)."""
        if calibration not in CALIBRATIONS:
            raise ValueError(f'unknown calibration {calibration!r}; expected one of '
                             f'{list(CALIBRATIONS)}')
        return {'none': self.cam, 'clip': self.calibrated,
                'clip_local_mean': self.calibrated_local_mean}[calibration]


def compute_grounding_maps(cam: torch.Tensor, cosine: torch.Tensor) -> GroundingMaps:
    """Calibrate class activation maps with the CLIP affinity.

    Args:
        cam: (N, K, G, G) raw class activation maps.
        cosine: (N, K, G, G) raw CLIP patch-prompt cosines for the same classes.

    Returns:
        The maps of docs/method.md, "Inference and calibration".
    """
    affinity = minmax_per_map(cosine)
    return GroundingMaps(cam=cam, affinity=affinity, calibrated=affinity * cam,
                         calibrated_local_mean=affinity * local_mean_3x3(cam))


class AffordanceGrounder(nn.Module):
    """Frozen CLIP + DINO backbones, affordance head and stored item-prompt embeddings."""

    def __init__(self, config: ModelConfig, clip: ClipDenseEncoder, dino: DinoKeyEncoder,
                 head: AffordanceHead, item_text: torch.Tensor):
        """Assemble the network.

        Args:
            config: The configuration the parts were built from.
            clip: Dense CLIP encoder.
            dino: DINO key encoder.
            head: Affordance head.
            item_text: (C, E) item-prompt text embeddings in label order.
        """
        super().__init__()
        if item_text.shape != (len(config.labels), clip.embed_dim):
            raise ValueError(f'item prompt table has shape {tuple(item_text.shape)}, expected '
                             f'({len(config.labels)}, {clip.embed_dim})')
        self.config = config
        self.clip = clip
        self.dino = dino
        self.head = head
        if clip.patch_size != dino.patch_size or config.image_size % clip.patch_size:
            raise ValueError(
                f'CLIP patch {clip.patch_size} and DINO patch {dino.patch_size} must be equal and '
                f'divide image_size {config.image_size}: both maps share one patch grid')
        self.grid = config.image_size // clip.patch_size
        self.register_buffer('item_text', item_text.detach().float().clone())
        clip_mean, clip_std = _as_channel_stats(config.clip_mean, config.clip_std)
        self.register_buffer('clip_mean', clip_mean, persistent=False)
        self.register_buffer('clip_std', clip_std, persistent=False)
        self.shared_normalisation = (config.clip_mean == config.dino_mean
                                     and config.clip_std == config.dino_std)
        dino_mean, dino_std = _as_channel_stats(config.dino_mean, config.dino_std)
        self.register_buffer('dino_mean', dino_mean, persistent=False)
        self.register_buffer('dino_std', dino_std, persistent=False)

    @property
    def labels(self):
        """Affordance labels in classifier order."""
        return self.config.labels

    def forward_features(self, image: torch.Tensor) -> BackboneFeatures:
        """Run both frozen backbones.

        Args:
            image: (N, 3, S, S) float tensor normalised with ``config.dino_mean/std`` (the
                preprocessing of docs/method.md, "Data"; with the default config both
                backbones share the ImageNet statistics, so no re-normalisation happens).

        Returns:
            Backbone features.
        """
        return BackboneFeatures(clip_tokens=self.clip(self.to_clip_input(image)),
                                dino_keys=self.dino(image))

    def to_clip_input(self, image: torch.Tensor) -> torch.Tensor:
        """Re-normalise DINO-normalised images for CLIP (a no-op when both share statistics)."""
        if self.shared_normalisation:
            return image
        return (image * self.dino_std + self.dino_mean - self.clip_mean) / self.clip_std

    def forward_head(self, features: BackboneFeatures,
                     class_index: Optional[torch.Tensor] = None) -> GroundingMaps:
        """Compute the calibrated maps from features.

        Args:
            features: Output of :meth:`forward_features`.
            class_index: Optional (N,) int64 label index per image. None computes all classes.

        Returns:
            Maps with K = C (all classes) or K = 1 (requested class per image).
        """
        batch = features.dino_keys.shape[0]
        grid = self.grid
        cam = self.head(features.dino_keys, grid)  # (N, C, G, G)
        if class_index is None:
            texts = self.item_text  # (C, E)
        else:
            class_index = class_index.to(device=cam.device, dtype=torch.long).view(batch)
            cam = cam[torch.arange(batch, device=cam.device), class_index][:, None]  # (N,1,G,G)
            texts = self.item_text[class_index][:, None]  # (N, 1, E)
        cosine = cosine_affinity(features.clip_tokens, texts)  # (N, K, P)
        cosine = cosine.view(batch, -1, grid, grid)  # (N, K, G, G)
        return compute_grounding_maps(cam, cosine)

    def forward(self, image: torch.Tensor,
                class_index: Optional[torch.Tensor] = None) -> GroundingMaps:
        """Run the whole network: see :meth:`forward_features` and :meth:`forward_head`."""
        return self.forward_head(self.forward_features(image), class_index)

    def heatmaps(self, maps: GroundingMaps, calibration: str = 'clip',
                 size: Optional[int] = None) -> torch.Tensor:
        """Upsample and min-max the selected map as the evaluation does (docs/method.md).

        Returns:
            (N, K, size, size) maps in [0, 1], size defaulting to the network input size.
        """
        return upsample_and_normalize(maps.select(calibration), size or self.config.image_size)


def _as_channel_stats(mean, std):
    """Return (1, 3, 1, 1) float tensors for per-channel normalisation constants."""
    return (torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
            torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
