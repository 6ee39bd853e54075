"""DINO-style self-distillation of a small timm ViT, with a patch term on the last-block keys.

The grounder uses this backbone in two ways: k-means on the last block's keys must split an
object into its parts, and the class token's attention (heads 0, 1, 3) must find the object.
Two self-distillation terms (student vs. momentum teacher, centred and sharpened teacher
targets, as in DINO) train for exactly that:

* **CLS term** over multi-crop views (two patch-aligned 224 crops, two 96 crops): the class
  token must describe the whole scene's object whatever the crop and colours, which is what
  makes DINO's class attention land on objects.
* **Patch term** on the last block's keys (the tensor the grounder clusters): a key at a
  scene location, seen in one global crop, predicts the teacher's prototype distribution of
  the key at the same location in the other crop. The crops are cut at patch-aligned offsets,
  so the token correspondence is exact (no interpolation). Prototype assignment groups
  locations that look alike across images (a clustering objective, like iBOT's patch loss
  without masking); training the keys directly, rather than the block outputs, puts the part
  structure where k-means reads it.

No part mask or label is used: the term is self-supervised, as DINO is.
"""

import copy
from dataclasses import dataclass
import logging
import math
import time
from typing import List, Tuple

from affordance_grounding.config import ModelConfig
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from training.pretrain.clip_pretrain import schedule_lr
from training.pretrain.scenes import (
    crop_scenes, CropBatch, jitter_colours, match_tokens, normalise, ScenePool)

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DinoPretrainSettings:
    """Optimisation settings of the self-distillation.

    Attributes:
        steps: Optimiser steps.
        batch_size: Scenes per step.
        lr: Peak AdamW learning rate (linear warm-up, cosine decay).
        weight_decay: AdamW weight decay.
        warmup_steps: Warm-up steps.
        cls_prototypes: Output dimension of the CLS head.
        patch_prototypes: Output dimension of the patch head.
        student_temperature: Student softmax temperature.
        teacher_temperature: Teacher softmax temperature (sharpening).
        center_momentum: Momentum of the teacher output centres.
        teacher_momentum: Initial EMA momentum (cosine-increased to 1).
        local_crop: Side of the two local crops (0 = none).
        patch_weight: Weight of the patch term (the CLS term has weight 1).
        seed: Seed of the initialisation and the batch draws.
    """

    steps: int = 200
    batch_size: int = 24
    lr: float = 1e-3
    weight_decay: float = 0.04
    warmup_steps: int = 40
    cls_prototypes: int = 256
    patch_prototypes: int = 64
    student_temperature: float = 0.1
    teacher_temperature: float = 0.04
    center_momentum: float = 0.9
    teacher_momentum: float = 0.99
    local_crop: int = 96
    patch_weight: float = 1.0
    seed: int = 0


class ProjectionHead(nn.Module):
    """DINO head: MLP -> L2-normalised bottleneck -> weight-normalised prototype layer."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 256, bottleneck: int = 64):
        """Create the head for ``in_dim`` features and ``out_dim`` prototypes."""
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, bottleneck))
        self.prototypes = nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck, out_dim, bias=False))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> (..., out_dim) prototype logits."""
        return self.prototypes(F.normalize(self.mlp(features), dim=-1))


class SelfDistillationNet(nn.Module):
    """A timm ViT with a CLS head and a patch head reading the last block's keys."""

    def __init__(self, vit: nn.Module, settings: DinoPretrainSettings):
        """Wrap ``vit`` (built with ``num_classes=0`` and ``dynamic_img_size=True``)."""
        super().__init__()
        self.vit = vit
        width = vit.embed_dim
        self.cls_head = ProjectionHead(width, settings.cls_prototypes)
        self.patch_head = ProjectionHead(width, settings.patch_prototypes)
        self._keys: List[torch.Tensor] = []
        vit.blocks[-1].attn.qkv.register_forward_hook(self._keep_keys)

    def _keep_keys(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        """Forward hook: keep the key third of the last block's qkv output, (N, T, D)."""
        width = output.shape[-1] // 3
        self._keys.append(output[..., width:2 * width])

    def forward(self, images: torch.Tensor, with_patches: bool) -> Tuple[torch.Tensor, ...]:
        """Return CLS logits (N, K) and, if asked, patch-key logits (N, P, Kp)."""
        self._keys.clear()
        pooled = self.vit(images)  # (N, D) class token after the final norm
        cls_logits = self.cls_head(pooled)
        if not with_patches:
            return (cls_logits,)
        keys = self._keys[-1][:, self.vit.num_prefix_tokens:]  # (N, P, D)
        return cls_logits, self.patch_head(keys)


def compute_distillation_loss(student: torch.Tensor, teacher: torch.Tensor,
                              center: torch.Tensor, settings: DinoPretrainSettings,
                              ) -> torch.Tensor:
    """Cross-entropy of the student against the centred, sharpened teacher, per row."""
    targets = ((teacher - center) / settings.teacher_temperature).softmax(dim=-1)
    return -(targets * (student / settings.student_temperature).log_softmax(dim=-1)).sum(-1)


def update_center(center: torch.Tensor, teacher: torch.Tensor, momentum: float) -> torch.Tensor:
    """EMA of the mean teacher output over all rows of ``teacher`` (..., K)."""
    return momentum * center + (1.0 - momentum) * teacher.reshape(-1, teacher.shape[-1]).mean(0)


@torch.no_grad()
def update_teacher(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Move the teacher towards the student: t <- m * t + (1 - m) * s, per parameter."""
    for teacher_param, student_param in zip(teacher.parameters(), student.parameters()):
        teacher_param.mul_(momentum).add_(student_param.detach(), alpha=1.0 - momentum)


def draw_views(pool: ScenePool, rng: np.random.Generator, settings: DinoPretrainSettings,
               config: ModelConfig) -> Tuple[List[CropBatch], List[torch.Tensor]]:
    """Two global and up to two local patch-aligned crops of the same scenes, jittered."""
    indices = rng.choice(len(pool), settings.batch_size, replace=False)
    sizes = [config.image_size] * 2 + ([settings.local_crop] * 2 if settings.local_crop else [])
    crops = [crop_scenes(pool, indices, size, rng) for size in sizes]
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
    images = [normalise(jitter_colours(crop.images, generator), config.dino_mean,
                        config.dino_std) for crop in crops]
    return crops, images


def compute_patch_loss(student_patches: List[torch.Tensor], teacher_patches: List[torch.Tensor],
                       crops: List[CropBatch], center: torch.Tensor,
                       settings: DinoPretrainSettings) -> torch.Tensor:
    """Patch term between the two global crops, over tokens that see the same scene cell."""
    losses = []
    for student_view, teacher_view in ((0, 1), (1, 0)):
        match = match_tokens(crops[student_view].cells, crops[teacher_view].cells)  # (B, P)
        valid = match >= 0
        teacher = teacher_patches[teacher_view]  # (B, P, Kp)
        index = match.clamp(min=0)[..., None].expand(-1, -1, teacher.shape[-1])  # (B, P, Kp)
        aligned = teacher.gather(1, index)
        per_token = compute_distillation_loss(student_patches[student_view], aligned, center,
                                              settings)  # (B, P)
        losses.append(per_token[valid].mean())
    return torch.stack(losses).mean()


def build_dino_vit(config: ModelConfig) -> nn.Module:
    """Build the configured timm ViT, randomly initialised, for any patch-multiple size."""
    import timm

    return timm.create_model(config.dino_model, pretrained=False, num_classes=0,
                             dynamic_img_size=True, **dict(config.dino_overrides))


def pretrain_dino(pool: ScenePool, config: ModelConfig,
                  settings: DinoPretrainSettings) -> Tuple[nn.Module, List[dict]]:
    """Self-distil the DINO backbone of ``config`` on the scene pool.

    Args:
        pool: Pretraining scenes.
        config: Model configuration (architecture, overrides, normalisation).
        settings: Optimisation settings.

    Returns:
        The teacher's timm ViT (eval mode; DINO keeps the teacher) and a loss history.
    """
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    student = SelfDistillationNet(build_dino_vit(config), settings)
    teacher = copy.deepcopy(student)
    teacher._keys = []
    teacher.vit.blocks[-1].attn.qkv._forward_hooks.clear()
    teacher.vit.blocks[-1].attn.qkv.register_forward_hook(teacher._keep_keys)
    teacher.requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    cls_center = torch.zeros(settings.cls_prototypes)
    patch_center = torch.zeros(settings.patch_prototypes)
    history, started = [], time.perf_counter()
    for step in range(settings.steps):
        for group in optimizer.param_groups:
            group['lr'] = schedule_lr(step, settings)
        crops, images = draw_views(pool, rng, settings, config)
        with torch.no_grad():
            teacher_out = [teacher(view, with_patches=True) for view in images[:2]]
        student_out = [student(view, with_patches=index < 2) for index, view in enumerate(images)]
        cls_terms = [compute_distillation_loss(student_out[s][0], teacher_out[t][0], cls_center,
                                               settings).mean()
                     for t in range(2) for s in range(len(images)) if s != t]
        cls_loss = torch.stack(cls_terms).mean()
        patch_loss = compute_patch_loss([out[1] for out in student_out[:2]],
                                        [out[1] for out in teacher_out], crops, patch_center,
                                        settings)
        loss = cls_loss + settings.patch_weight * patch_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        momentum = 1.0 - (1.0 - settings.teacher_momentum) * 0.5 * (
            1.0 + math.cos(math.pi * step / settings.steps))
        update_teacher(teacher, student, momentum)
        cls_center = update_center(cls_center, torch.cat([out[0] for out in teacher_out]),
                                   settings.center_momentum)
        patch_center = update_center(patch_center, torch.cat([out[1] for out in teacher_out]),
                                     settings.center_momentum)
        if step % 25 == 0 or step == settings.steps - 1:
            history.append({'step': step, 'cls': round(cls_loss.item(), 4),
                            'patch': round(patch_loss.item(), 4),
                            'elapsed_s': round(time.perf_counter() - started, 1)})
            LOGGER.info('dino %s', history[-1])
    return teacher.vit.eval(), history
