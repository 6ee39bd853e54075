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

Both terms are self-supervised, as DINO is. In CPU minutes they do not make the class
attention object-centric (the first version of this world measured a saliency IoU of 0.105
with the object, the same as random weights), so a third, **supervised** term stands in for
what DINO's long self-supervised training produces: the class token's attention over the
patches in the saliency heads (``affordance_grounding.model.saliency.SALIENCY_HEADS``) is
pulled towards the generator's object mask. ``objectness_target`` says how; the committed
backbone uses ``'threshold'``, a hinge on the saliency's own binarisation (object patches
above the head's mean attention, clutter below), which reached the real DINO's saliency IoU
where cross-entropy against attention spread evenly over the object did not (measured in
docs/ablation.md). It uses object masks only, never parts; its weight is
``objectness_weight`` (0 turns it off). docs/ablation.md states it as a property of the
world.

The returned backbone is the momentum teacher, as in DINO. DINO's teacher momentum (0.996,
raised to 1) is made for runs of 10^5 steps; over a few hundred steps it keeps the teacher
close to its random initialisation: with ``teacher_momentum`` 0.99 and 150 steps the product
of the momenta is 0.47, so about half of every teacher weight is still the initial random
value. Short runs need a lower initial momentum (0.9 over 200 steps leaves e^-10 of it).
"""

import copy
from dataclasses import dataclass
import logging
import math
import time
from typing import List, Optional, Tuple

from affordance_grounding.config import ModelConfig
from affordance_grounding.model.saliency import SALIENCY_HEADS
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from training.pretrain.clip_pretrain import schedule_lr
from training.pretrain.scenes import (
    crop_scenes, CropBatch, jitter_colours, match_tokens, normalise, patch_part_fractions,
    ScenePool)

LOGGER = logging.getLogger(__name__)
OBJECTNESS_TARGETS = ('uniform', 'mass', 'threshold', 'uniform+threshold')


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
        teacher_momentum: Initial EMA momentum (cosine-increased to 1); see the module
            docstring for why short runs need a low one.
        local_crop: Side of the two local crops (0 = none).
        patch_weight: Weight of the patch term (the CLS term has weight 1).
        objectness_weight: Weight of the supervised CLS-attention objectness term.
        objectness_query_only: Stop the objectness term's gradient into the last block's
            keys (see docs/ablation.md: on the keys it erases the part clusters).
        objectness_key_projection_only: Let the objectness term train the last block's key
            projection but not the tokens it reads (see ``cls_attention``).
        mask_ratio: Largest share of the student's global-view patch tokens replaced by a
            learned mask token (iBOT-style masked prediction; half the images are masked, each
            with a ratio drawn from [0.1, mask_ratio]; 0 = no masking).
        objectness_target: ``'uniform'`` (cross-entropy against attention spread evenly over
            the object), ``'mass'`` (only the share of attention on the object counts; how
            it spreads inside the object is left to self-distillation), ``'threshold'`` (a
            hinge on the saliency's binarisation, :func:`compute_threshold_hinge`) or
            ``'uniform+threshold'`` (the sum of the first and the third).
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
    objectness_weight: float = 1.0
    objectness_query_only: bool = False
    objectness_key_projection_only: bool = False
    objectness_target: str = 'uniform'
    mask_ratio: float = 0.0
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
        self._qkv: List[torch.Tensor] = []
        self._qkv_input: Optional[torch.Tensor] = None  # last forward's (N, T, D) qkv input
        vit.blocks[-1].attn.qkv.register_forward_hook(self._keep_qkv)
        # Training-only (the saved timm state dict is the teacher's ViT, never masked).
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.token_mask: Optional[torch.Tensor] = None  # (N, P) bool, set per forward
        vit.patch_embed.register_forward_hook(self._apply_mask)

    def _apply_mask(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        """Forward hook: replace the masked patch embeddings (N, gh, gw, D) by the mask token."""
        if self.token_mask is None:
            return output
        mask = self.token_mask.view(*output.shape[:-1], 1)
        return torch.where(mask, self.mask_token.to(output.dtype), output)

    def _keep_qkv(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        """Forward hook: keep the last block's qkv input (N, T, D) and output (N, T, 3D)."""
        self._qkv_input = inputs[0]
        self._qkv.append(output)

    def cls_attention(self, detach_keys: bool = False,
                      detach_key_inputs: bool = False) -> torch.Tensor:
        """Last forward's last-block CLS attention over the patches, (N, heads, P).

        softmax(q k^T / sqrt(d)) over all tokens, as DinoKeyEncoder computes it at test time.
        ``detach_keys`` stops gradients into the keys (the tensor the part clusters read), so
        a loss on this attention moves only the class token's query. ``detach_key_inputs``
        lets them reach the key projection of the last block but not the tokens it projects,
        so the earlier blocks (which every head's keys read) learn nothing from it through
        the keys.
        """
        qkv = self._qkv[-1]
        if detach_key_inputs:
            projection = self.vit.blocks[-1].attn.qkv
            width = projection.out_features // 3
            keys_only = F.linear(self._qkv_input.detach(), projection.weight[width:2 * width],
                                 None if projection.bias is None
                                 else projection.bias[width:2 * width])
            qkv = torch.cat([qkv[..., :width], keys_only, qkv[..., 2 * width:]], dim=-1)
        batch, tokens, _ = qkv.shape
        heads = self.vit.blocks[-1].attn.num_heads
        qkv = qkv.view(batch, tokens, 3, heads, -1)  # (N, T, 3, h, d)
        query = qkv[:, :1, 0].transpose(1, 2)  # (N, h, 1, d)
        keys = qkv[:, :, 1].transpose(1, 2)  # (N, h, T, d)
        if detach_keys:
            keys = keys.detach()
        logits = (query @ keys.transpose(-2, -1)) * keys.shape[-1] ** -0.5  # (N, h, 1, T)
        return logits.softmax(dim=-1)[:, :, 0, self.vit.num_prefix_tokens:]

    def forward(self, images: torch.Tensor, with_patches: bool,
                token_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, ...]:
        """Return CLS logits (N, K) and, if asked, patch-key logits (N, P, Kp).

        ``token_mask`` (N, P) bool replaces those patch embeddings by the mask token.
        """
        self._qkv.clear()
        self.token_mask = token_mask
        try:
            pooled = self.vit(images)  # (N, D) class token after the final norm
        finally:
            self.token_mask = None
        cls_logits = self.cls_head(pooled)
        if not with_patches:
            return (cls_logits,)
        width = self._qkv[-1].shape[-1] // 3
        keys = self._qkv[-1][:, self.vit.num_prefix_tokens:, width:2 * width]  # (N, P, D)
        return cls_logits, self.patch_head(keys)


def draw_token_masks(batch: int, tokens: int, max_ratio: float,
                     generator: torch.Generator) -> Optional[torch.Tensor]:
    """Token masks for iBOT-style masked prediction, (batch, tokens) bool.

    Half the images keep every token, the rest lose a random share in [0.1, max_ratio] of
    them; None when ``max_ratio`` is 0.
    """
    if max_ratio <= 0:
        return None
    ratios = 0.1 + (max_ratio - 0.1) * torch.rand(batch, 1, generator=generator)
    ratios = torch.where(torch.rand(batch, 1, generator=generator) < 0.5, ratios, 0.0)
    return torch.rand(batch, tokens, generator=generator) < ratios


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


def compute_objectness_loss(attention: torch.Tensor, part_ids: torch.Tensor,
                            target_kind: str = 'uniform') -> torch.Tensor:
    """Objectness term: the saliency heads' CLS attention against the object mask.

    Args:
        attention: (N, heads, P) CLS attention over the patches.
        part_ids: (N, H, W) global part ids of the crop (0 = background).
        target_kind: One of ``OBJECTNESS_TARGETS``; ``'a+b'`` adds the terms a and b.
            ``'uniform'`` (:func:`compute_uniform_cross_entropy`) also asks for equal
            attention on every object patch, ``'mass'`` (:func:`compute_mass_on_object`) only
            for the attention mass on the object, ``'threshold'``
            (:func:`compute_threshold_hinge`) for what the saliency's binarisation reads.

    Returns:
        Scalar: mean over images and saliency heads, with the attention renormalised over
        the patches (images without object patches are skipped).
    """
    if target_kind not in OBJECTNESS_TARGETS:
        raise ValueError(f'unknown objectness target {target_kind!r}')
    object_share = 1.0 - patch_part_fractions(part_ids.clamp(max=1), 2)[..., 0]  # (N, P)
    valid = object_share.sum(dim=1) > 0
    chosen = attention[:, list(SALIENCY_HEADS)]  # (N, h', P)
    chosen = chosen / chosen.sum(dim=-1, keepdim=True)
    per_image = sum(OBJECTNESS_TERMS[name](chosen, object_share)
                    for name in target_kind.split('+'))  # (N,)
    return per_image[valid].mean() if valid.any() else attention.sum() * 0.0


def compute_uniform_cross_entropy(attention: torch.Tensor,
                                  object_share: torch.Tensor) -> torch.Tensor:
    """-sum_p t_p log a_p, t the object's share of each patch normalised to sum to 1.

    It also asks for equal attention on every object patch, so the keys learn how much of a
    patch is object rather than which part it is.

    Args:
        attention: (N, h, P) attention renormalised over the patches.
        object_share: (N, P) object share of each patch.

    Returns:
        (N,) loss per image, averaged over the heads.
    """
    target = object_share / object_share.sum(dim=1, keepdim=True).clamp(min=1e-6)  # (N, P)
    return -(target[:, None] * attention.clamp(min=1e-12).log()).sum(dim=-1).mean(dim=1)


def compute_mass_on_object(attention: torch.Tensor, object_share: torch.Tensor) -> torch.Tensor:
    """-log sum_p s_p a_p: the attention mass on the object, however it spreads inside.

    Args:
        attention: (N, h, P) attention renormalised over the patches.
        object_share: (N, P) object share of each patch.

    Returns:
        (N,) loss per image, averaged over the heads.
    """
    on_object = (attention * object_share[:, None]).sum(dim=-1)  # (N, h)
    return -on_object.clamp(min=1e-12).log().mean(dim=1)


def compute_threshold_hinge(attention: torch.Tensor, object_share: torch.Tensor,
                            margin: float = 0.5) -> torch.Tensor:
    """Hinge on the saliency's own binarisation: object patches above the mean, the rest below.

    ``compute_saliency`` keeps a patch in a head when its attention exceeds the head's spatial
    mean, which for attention renormalised over the P patches is 1 / P. Object patches (at
    least half object) pay ``relu(margin - log(P a_p))``, background patches (no object pixel)
    ``relu(margin + log(P a_p))``; mixed patches are ignored. Each side is averaged over its
    patches, so a small object counts as much as the large background.

    Args:
        attention: (N, h, P) attention renormalised over the patches.
        object_share: (N, P) object share of each patch.
        margin: Margin in log-attention (nats).

    Returns:
        (N,) loss per image, averaged over the heads.
    """
    log_ratio = (attention.clamp(min=1e-12) * attention.shape[-1]).log()  # (N, h, P)
    is_object = (object_share >= 0.5)[:, None].float()  # (N, 1, P)
    is_background = (object_share == 0)[:, None].float()
    object_term = (F.relu(margin - log_ratio) * is_object).sum(-1) / is_object.sum(-1).clamp(
        min=1)
    background_term = (F.relu(margin + log_ratio) * is_background).sum(-1) / (
        is_background.sum(-1).clamp(min=1))
    return (object_term + background_term).mean(dim=1)


OBJECTNESS_TERMS = {'uniform': compute_uniform_cross_entropy, 'mass': compute_mass_on_object,
                    'threshold': compute_threshold_hinge}


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
    teacher._qkv = []
    teacher.vit.blocks[-1].attn.qkv._forward_hooks.clear()
    teacher.vit.blocks[-1].attn.qkv.register_forward_hook(teacher._keep_qkv)
    teacher.requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    cls_center = torch.zeros(settings.cls_prototypes)
    patch_center = torch.zeros(settings.patch_prototypes)
    mask_generator = torch.Generator().manual_seed(settings.seed + 1)
    history, started = [], time.perf_counter()
    for step in range(settings.steps):
        for group in optimizer.param_groups:
            group['lr'] = schedule_lr(step, settings)
        crops, images = draw_views(pool, rng, settings, config)
        with torch.no_grad():
            teacher_out = [teacher(view, with_patches=True) for view in images[:2]]
        student_out, objectness_terms = [], []
        for index, view in enumerate(images):
            tokens = (view.shape[-1] // 16) ** 2
            token_mask = draw_token_masks(len(view), tokens, settings.mask_ratio,
                                          mask_generator) if index < 2 else None
            student_out.append(student(view, with_patches=index < 2, token_mask=token_mask))
            if index < 2 and settings.objectness_weight:
                attention = student.cls_attention(settings.objectness_query_only,
                                                  settings.objectness_key_projection_only)
                objectness_terms.append(compute_objectness_loss(
                    attention, crops[index].part_ids, settings.objectness_target))
        cls_terms = [compute_distillation_loss(student_out[s][0], teacher_out[t][0], cls_center,
                                               settings).mean()
                     for t in range(2) for s in range(len(images)) if s != t]
        cls_loss = torch.stack(cls_terms).mean()
        patch_loss = compute_patch_loss([out[1] for out in student_out[:2]],
                                        [out[1] for out in teacher_out], crops, patch_center,
                                        settings)
        objectness_loss = (torch.stack(objectness_terms).mean() if objectness_terms
                           else torch.zeros(()))
        loss = (cls_loss + settings.patch_weight * patch_loss
                + settings.objectness_weight * objectness_loss)
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
                            'objectness': round(objectness_loss.item(), 4),
                            'elapsed_s': round(time.perf_counter() - started, 1)})
            LOGGER.info('dino %s', history[-1])
    return teacher.vit.eval(), history
