"""The training network: the inference grounder plus the training-only heads.

Names of the extra modules (``aff_exo_proj``, ``K_contrast_projection``,
``pixel_contrast_projection``) follow the released state dicts, so an imported checkpoint's
training state loads into them.
"""

from dataclasses import dataclass
from typing import Dict

from affordance_grounding.model.calibration import cosine_affinity, local_mean_3x3
from affordance_grounding.model.grounding import AffordanceGrounder
from affordance_grounding.model.head import build_conv_stack
import torch
from torch import nn


# Modules that exist only for training (not part of an inference bundle's head).
TRAINING_ONLY_MODULES = ('aff_exo_proj', 'K_contrast_projection', 'pixel_contrast_projection')


@dataclass
class FrozenFeatures:
    """Backbone outputs of one training batch (computed without gradients).

    Attributes:
        clip_ego: (B, P, E) ClearCLIP patch features of the ego images.
        clip_exo: (BE, P, E) of the exo images.
        keys_ego: (B, P, D) DINO keys of the ego images.
        keys_exo: (BE, P, D) DINO keys of the exo images.
        cls_attention_ego: (B, heads, P) DINO CLS attention of the ego images.
    """

    clip_ego: torch.Tensor
    clip_exo: torch.Tensor
    keys_ego: torch.Tensor
    keys_exo: torch.Tensor
    cls_attention_ego: torch.Tensor


@dataclass
class HeadOutputs:
    """Trainable-head outputs of one batch (with gradients).

    Attributes:
        cam_ego: (B, C, G, G) ego class activation maps.
        cam_exo: (BE, C, G, G) exo class activation maps.
        embed_ego: (B, D, G, G) ego features for the prototype loss.
        embed_exo: (BE, D, G, G) exo features for the prototype loss.
        embed_pixel: (B, D, G, G) ego features for the pixel loss.
    """

    cam_ego: torch.Tensor
    cam_exo: torch.Tensor
    embed_ego: torch.Tensor
    embed_exo: torch.Tensor
    embed_pixel: torch.Tensor


class SelectiveCLModel(nn.Module):
    """Frozen backbones + trainable head + training-only heads."""

    def __init__(self, grounder: AffordanceGrounder, person_text: torch.Tensor,
                 bn_momentum: float = 0.1):
        """Wrap a grounder.

        Args:
            grounder: Inference network (its head is trained in place).
            person_text: (C, E) person-prompt embeddings.
            bn_momentum: BatchNorm momentum of both conv stacks.
        """
        super().__init__()
        self.grounder = grounder
        width = grounder.head.width
        self.aff_exo_proj = build_conv_stack(width)
        self.K_contrast_projection = nn.Conv2d(width, width, kernel_size=1)
        self.pixel_contrast_projection = nn.Conv2d(width, width, kernel_size=1)
        self.register_buffer('person_text', person_text.detach().float().clone())
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = bn_momentum

    def trainable_modules(self) -> Dict[str, nn.Module]:
        """Return the modules the optimiser updates, keyed by their reference names."""
        head = self.grounder.head
        return {'aff_proj': head.aff_proj, 'aff_ego_proj': head.aff_ego_proj,
                'aff_exo_proj': self.aff_exo_proj, 'aff_classifier': head.aff_classifier,
                'K_contrast_projection': self.K_contrast_projection,
                'pixel_contrast_projection': self.pixel_contrast_projection}

    def training_state(self) -> Dict[str, torch.Tensor]:
        """Return the training-only modules' state (stored in bundles as ``training_state``)."""
        state = {}
        for name in TRAINING_ONLY_MODULES:
            for key, value in getattr(self, name).state_dict().items():
                state[f'{name}.{key}'] = value.detach().cpu().clone()
        return state

    def load_training_state(self, state: Dict[str, torch.Tensor]) -> None:
        """Load the output of :meth:`training_state` (strict)."""
        for name in TRAINING_ONLY_MODULES:
            prefix = f'{name}.'
            part = {key[len(prefix):]: value for key, value in state.items()
                    if key.startswith(prefix)}
            getattr(self, name).load_state_dict(part, strict=True)

    @torch.no_grad()
    def compute_frozen_features(self, ego: torch.Tensor, exo: torch.Tensor) -> FrozenFeatures:
        """Run both frozen backbones on (B, 3, S, S) ego and (BE, 3, S, S) exo images."""
        grounder = self.grounder
        images = torch.cat([ego, exo])  # (B + BE, 3, S, S): one pass per backbone
        clip_tokens = grounder.clip(grounder.to_clip_input(images))  # (B + BE, P, E)
        keys_exo = grounder.dino(exo)  # (BE, P, D)
        keys_ego, attention = grounder.dino.forward_with_attention(ego)  # (B,P,D), (B,h,P)
        batch = ego.shape[0]
        return FrozenFeatures(clip_ego=clip_tokens[:batch], clip_exo=clip_tokens[batch:],
                              keys_ego=keys_ego, keys_exo=keys_exo,
                              cls_attention_ego=attention)

    def forward(self, features: FrozenFeatures) -> HeadOutputs:
        """Apply the trainable heads (``forward`` so a DDP wrapper can call it)."""
        return self.forward_heads(features)

    def forward_heads(self, features: FrozenFeatures) -> HeadOutputs:
        """Apply the trainable heads (each conv stack once; see docs/method.md, "Model")."""
        head = self.grounder.head
        grid = self.grounder.grid
        hidden_ego = head.aff_ego_proj(head.project_descriptors(features.keys_ego, grid))
        hidden_exo = self.aff_exo_proj(head.project_descriptors(features.keys_exo, grid))
        return HeadOutputs(cam_ego=head.aff_classifier(hidden_ego),
                           cam_exo=head.aff_classifier(hidden_exo),
                           embed_ego=self.K_contrast_projection(hidden_ego),
                           embed_exo=self.K_contrast_projection(hidden_exo),
                           embed_pixel=self.pixel_contrast_projection(hidden_ego))


def compute_clip_affinities(features: FrozenFeatures, item_text: torch.Tensor,
                            person_text: torch.Tensor, num_exo: int, grid: int):
    """Ego and exo CLIP affinity maps of docs/method.md, "Training step".

    Args:
        features: Frozen features of the batch.
        item_text: (B, E) item-prompt embedding of each sample's label.
        person_text: (B, E) person-prompt embedding of each sample's label.
        num_exo: Exo images per sample.
        grid: Patch grid side.

    Returns:
        ``(s_ego, s_exo, q_exo)``: raw ego cosine (B, G, G); exo map LM(O) * Q (BE, G, G);
        exo item cosine Q (BE, G, G) (used by the pixel loss).
    """
    batch = item_text.shape[0]
    s_ego = cosine_affinity(features.clip_ego, item_text[:, None])  # (B, 1, P)
    exo_item = item_text.repeat_interleave(num_exo, dim=0)[:, None]  # (BE, 1, E)
    exo_person = person_text.repeat_interleave(num_exo, dim=0)[:, None]  # (BE, 1, E)
    q_exo = cosine_affinity(features.clip_exo, exo_item).view(-1, 1, grid, grid)
    o_exo = cosine_affinity(features.clip_exo, exo_person).view(-1, 1, grid, grid)
    s_exo = local_mean_3x3(o_exo) * q_exo  # (BE, 1, G, G)
    return (s_ego.view(batch, grid, grid), s_exo[:, 0], q_exo[:, 0])
