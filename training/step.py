"""One SelectiveCL training step: frozen features, heads, part discovery, the four losses.

Batched over the batch on the device (docs/method.md, "Training step"): no per-sample Python loops.
"""

from dataclasses import dataclass
from typing import Dict, Optional

from affordance_grounding.model.saliency import compute_saliency
import torch
import torch.nn.functional as F
from training.config import TrainConfig
from training.losses import (
    build_prototype_weights, compute_foreground_mask, PixelContrastiveLoss,
    PrototypeContrastiveLoss)
from training.model import compute_clip_affinities, SelectiveCLModel
from training.parts import discover_parts, PartInputs, PartSettings

NEVER_ACCEPTED = float('inf')  # p-score threshold that forces object-level prototypes


@dataclass
class TrainBatch:
    """One batch on the device.

    Attributes:
        ego: (B, 3, S, S) normalised egocentric images.
        exo: (B, E, 3, S, S) normalised exocentric images.
        labels: (B,) int64 label indices.
    """

    ego: torch.Tensor
    exo: torch.Tensor
    labels: torch.Tensor


@dataclass
class StepResult:
    """Total loss (with graph) and detached loss components and statistics for logging."""

    loss: torch.Tensor
    components: Dict[str, torch.Tensor]


class SelectiveCLObjective:
    """Computes the SelectiveCL loss of a batch; switches give the paper's ablation rows."""

    def __init__(self, config: TrainConfig):
        """Read the loss settings once from the training config."""
        self.config = config
        threshold = config.pscore_threshold if config.part_prototypes else NEVER_ACCEPTED
        self.part_settings = PartSettings(
            num_exo=config.num_exo, gamma_exo=config.gamma_exo, pscore_threshold=threshold,
            num_clusters=config.num_clusters, kmeans_iters=config.kmeans_iters,
            legacy_row_indexing=config.legacy_row_indexing)
        self.proto_loss = PrototypeContrastiveLoss(config.temperature, config.base_temperature)
        self.pixel_loss = PixelContrastiveLoss(config.temperature, config.base_temperature)

    def __call__(self, model: SelectiveCLModel, batch: TrainBatch, epoch: int,
                 generator: Optional[torch.Generator] = None,
                 head_module: Optional[torch.nn.Module] = None) -> StepResult:
        """Compute the loss of one batch.

        Args:
            model: The training network.
            batch: Images and labels on the model's device.
            epoch: 0-based epoch (switches the region maps and the CAM gating).
            generator: Random source of the k-means initialisation.
            head_module: What to call for the trainable heads (the DDP wrapper when
                distributed; defaults to ``model``).

        Returns:
            The total loss and its components.
        """
        num_exo = batch.exo.shape[1]
        labels = batch.labels
        features = model.compute_frozen_features(batch.ego, batch.exo.flatten(0, 1))
        heads = (head_module or model)(features)
        components = self.classification_losses(heads.cam_ego, heads.cam_exo, labels, num_exo)
        statistics: Dict[str, torch.Tensor] = {}
        if self.config.use_proto_loss or self.config.use_pixel_loss:
            components.update(self.contrastive_losses(model, features, heads, labels, epoch,
                                                      generator, statistics))
        total = sum(components.values())
        logged = {name: value.detach() for name, value in components.items()}
        logged['total'] = total.detach()
        logged.update(statistics)
        return StepResult(loss=total, components=logged)

    @staticmethod
    def classification_losses(cam_ego, cam_exo, labels, num_exo) -> Dict[str, torch.Tensor]:
        """Cross-entropy on globally pooled CAMs: ego, and the mean over the E exo views.

        The reference divides the exo sum by a hard-coded 3, which is this mean for E = 3.
        """
        logits_ego = cam_ego.float().mean(dim=(2, 3))  # (B, C)
        logits_exo = cam_exo.float().mean(dim=(2, 3))  # (BE, C)
        exo_labels = labels.repeat_interleave(num_exo)  # (BE,), f = b*E + n
        return {'ce_ego': F.cross_entropy(logits_ego, labels),
                'ce_exo': F.cross_entropy(logits_exo, exo_labels)}

    def contrastive_losses(self, model, features, heads, labels, epoch, generator,
                           statistics: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """L_proto and/or L_pix; part statistics go to ``statistics``."""
        config = self.config
        grid = model.grounder.grid
        num_exo = features.keys_exo.shape[0] // labels.shape[0]
        s_ego, s_exo, q_exo = compute_clip_affinities(
            features, model.grounder.item_text[labels], model.person_text[labels], num_exo,
            grid)
        losses = {}
        if config.use_proto_loss:
            batch = labels.shape[0]
            cam_ego = heads.cam_ego[torch.arange(batch), labels]  # (B, G, G)
            exo_labels = labels.repeat_interleave(num_exo)
            cam_exo = heads.cam_exo[torch.arange(batch * num_exo), exo_labels]  # (BE, G, G)
            parts = discover_parts(PartInputs(
                keys_ego=features.keys_ego, keys_exo=features.keys_exo, s_ego=s_ego,
                s_exo=s_exo, cam_exo=cam_exo.detach().float(),
                saliency=compute_saliency(features.cls_attention_ego), epoch=epoch),
                self.part_settings, generator)
            weights = build_prototype_weights(parts, cam_ego.float(), cam_exo.float(), s_ego,
                                              epoch)
            losses['proto'] = self.proto_loss(heads.embed_ego, heads.embed_exo, weights, labels)
            statistics['part_fraction'] = parts.is_part.float().mean()
        if config.use_pixel_loss:
            foreground = compute_foreground_mask(s_ego, config.gamma_ego)
            losses['pix'] = self.pixel_loss(heads.embed_pixel, s_ego, q_exo, foreground)
        return losses
