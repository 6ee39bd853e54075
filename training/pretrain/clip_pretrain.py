"""Contrastive pretraining of a small open_clip model from image-level text and object masks.

Real CLIP learns from captions, never from part masks, and its dense (ClearCLIP/MaskCLIP)
affinity is an *object-level* cue: it finds the object an action involves, coarsely, not the
part the action uses. This model is trained to have exactly that property, through the code
paths the grounder uses:

* **Dense object-text term** (symmetric, like CLIP's). Every patch token of
  :class:`ClipDenseEncoder` (the ClearCLIP last block: q-q attention, no residual, no FFN,
  then ``ln_post`` and ``proj``) is classified against a vocabulary of texts: a background
  text, the name of every object (``a knife``) and the item and person prompts of every
  affordance (``an item to cut_with``, ``a person cut_with an item``); and every text in turn
  picks its patches among all patches of the batch. The target of a patch is built from
  **object masks only**: every pixel of a knife targets ``a knife`` and the prompts of every
  action a knife affords (``cut_with`` and ``hold``), whichever part it lies on. So the
  item-prompt affinity learns where the object is and nothing about which part acts. A
  spatial signal is needed at all because ClearCLIP's dense tokens mean something on real
  CLIP only after 400M image-text pairs, which a few CPU minutes cannot replace.
* **Caption term.** The mean of the dense tokens is contrasted with an image-level caption
  naming the object and an action (``a person cut_with a knife.``). With nine objects every
  batch holds many images of the same object, so ``open_clip.loss.ClipLoss``'s
  one-positive-per-row target would push identical captions apart; the term here treats
  every pair of the same object as positive.
"""

from dataclasses import dataclass
import logging
import math
import time
from typing import Dict, List, Tuple

from affordance_grounding.config import ModelConfig
from affordance_grounding.model.backbones import (
    build_clip_tokenizer, ClipDenseEncoder, load_clip_model)
from affordance_grounding.vocabulary import build_item_prompt, build_person_prompt
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from training.pretrain.scenes import (
    crop_scenes, jitter_colours, normalise, OBJECT_NAMES, PART_KEYS, patch_part_fractions,
    resize_scenes, ScenePool)
from training.synthetic import AFFORDANCE_PARTS, UNSEEN_AFFORDANCE_PARTS

LOGGER = logging.getLogger(__name__)
BACKGROUND_TEXT = 'background clutter'


@dataclass(frozen=True)
class ClipPretrainSettings:
    """Optimisation settings of the CLIP pretraining.

    Attributes:
        steps: Optimiser steps.
        batch_size: Images per step.
        lr: Peak AdamW learning rate (linear warm-up, cosine decay).
        weight_decay: AdamW weight decay.
        warmup_steps: Warm-up steps.
        caption_weight: Weight of the caption term (the dense term has weight 1).
        object_weight: Loss weight of a fully-object patch relative to a background patch.
        seed: Seed of the initialisation and the batch draws.
    """

    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 40
    caption_weight: float = 0.5
    object_weight: float = 3.0
    seed: int = 0


def actions_of(object_name: str) -> Dict[str, str]:
    """Affordance -> acting part for one Seen or Unseen object."""
    return {affordance: parts[object_name]
            for table in (AFFORDANCE_PARTS, UNSEEN_AFFORDANCE_PARTS)
            for affordance, parts in table.items() if object_name in parts}


def build_dense_vocabulary() -> Tuple[List[str], torch.Tensor]:
    """Texts of the dense term and the target distribution of every global part id.

    Every part of an object gets the same target (object-level supervision): the object's
    name and the item and person prompts of every action the object affords.

    Returns:
        ``(texts, targets)``: T strings and a (1 + len(PART_KEYS), T) float32 matrix whose
        row i (part id i, 0 = background) is a distribution over the texts.
    """
    texts = [BACKGROUND_TEXT] + [f'a {name}' for name in OBJECT_NAMES]
    for affordance in sorted(AFFORDANCE_PARTS):
        texts += [build_item_prompt(affordance), build_person_prompt(affordance)]
    targets = torch.zeros(1 + len(PART_KEYS), len(texts))
    targets[0, 0] = 1.0
    for part_id, (name, _) in enumerate(PART_KEYS, start=1):
        targets[part_id, texts.index(f'a {name}')] = 1.0
        for affordance in actions_of(name):
            targets[part_id, texts.index(build_item_prompt(affordance))] = 1.0
            targets[part_id, texts.index(build_person_prompt(affordance))] = 1.0
    return texts, targets / targets.sum(dim=1, keepdim=True)


CAPTIONS_PER_OBJECT = 4


def build_captions() -> Tuple[List[str], torch.Tensor]:
    """Image-level captions naming each object and what is done with it (no part names).

    Returns:
        ``(captions, object_ids)``: CAPTIONS_PER_OBJECT strings per object and the (K,)
        int64 object index of each.
    """
    captions, object_ids = [], []
    for object_id, name in enumerate(OBJECT_NAMES):
        actions = sorted(actions_of(name))
        texts = [f'a photo of a {name}.', f'a {name} on a cluttered table.']
        texts += [f'a person {actions[i % len(actions)]} a {name}.' for i in range(2)]
        captions += texts[:CAPTIONS_PER_OBJECT]
        object_ids += [object_id] * CAPTIONS_PER_OBJECT
    return captions, torch.tensor(object_ids)


def compute_dense_loss(tokens: torch.Tensor, fractions: torch.Tensor, text: torch.Tensor,
                       targets: torch.Tensor, logit_scale: torch.Tensor,
                       object_weight: float) -> torch.Tensor:
    """Soft-target cross-entropy of every patch over the text vocabulary.

    Args:
        tokens: (B, P, E) dense CLIP tokens.
        fractions: (B, P, I) part-id fractions per patch.
        text: (T, E) text embeddings of the vocabulary.
        targets: (I, T) target distribution of every part id.
        logit_scale: Scalar multiplier of the cosines.
        object_weight: Weight of a fully-object patch (background patches weigh 1).

    Returns:
        Scalar loss: patch -> text cross-entropy (each patch picks its texts, object patches
        weighted up) plus text -> patch cross-entropy over all patches of the batch (each text
        picks its patches). The second direction is what the test-time map needs: it is
        one text's cosine compared across patches (then min-max normalised per image).
    """
    logits = logit_scale * F.normalize(tokens, dim=-1) @ F.normalize(text, dim=-1).T  # (B,P,T)
    patch_targets = fractions @ targets  # (B, P, T)
    per_patch = -(patch_targets * logits.log_softmax(dim=-1)).sum(dim=-1)  # (B, P)
    weights = 1.0 + (object_weight - 1.0) * (1.0 - fractions[..., 0])  # (B, P)
    patch_to_text = (per_patch * weights).sum() / weights.sum()
    flat_logits = logits.flatten(0, 1)  # (BP, T)
    flat_targets = patch_targets.flatten(0, 1)  # (BP, T)
    mass = flat_targets.sum(dim=0)  # (T,)
    present = mass > 0
    column_targets = flat_targets[:, present] / mass[present]  # (BP, T') per text over patches
    text_to_patch = -(column_targets * flat_logits[:, present].log_softmax(dim=0)).sum(0).mean()
    return patch_to_text + text_to_patch


def compute_caption_loss(image: torch.Tensor, caption: torch.Tensor, groups: torch.Tensor,
                         logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric image-caption contrastive loss where every same-group pair is positive.

    Args:
        image: (B, E) image embeddings.
        caption: (B, E) caption embeddings (caption b describes image b).
        groups: (B,) int64 group (object) of each pair.
        logit_scale: Scalar multiplier of the cosines.

    Returns:
        Scalar loss.
    """
    logits = logit_scale * F.normalize(image, dim=-1) @ F.normalize(caption, dim=-1).T  # (B,B)
    positives = (groups[:, None] == groups[None, :]).float()  # (B, B)
    targets = positives / positives.sum(dim=1, keepdim=True)
    image_loss = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    text_loss = -(targets * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return 0.5 * (image_loss + text_loss)


def schedule_lr(step: int, settings) -> float:
    """Linear warm-up then cosine decay to 5% of the peak."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def draw_clip_batch(pool: ScenePool, rng: np.random.Generator, batch_size: int,
                    config: ModelConfig):
    """Half test-like resized scenes, half patch-aligned crops; colour-jittered, normalised."""
    indices = rng.choice(len(pool), batch_size, replace=False)
    half = batch_size // 2
    resized = resize_scenes(pool, indices[:half], config.image_size)
    cropped = crop_scenes(pool, indices[half:], config.image_size, rng)
    images = torch.cat([resized.images, cropped.images])  # (B, 3, S, S)
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
    images = normalise(jitter_colours(images, generator, 0.2), config.clip_mean, config.clip_std)
    part_ids = torch.cat([resized.part_ids, cropped.part_ids])  # (B, S, S)
    return images, part_ids, torch.from_numpy(pool.object_ids[indices])


def pretrain_clip(pool: ScenePool, config: ModelConfig,
                  settings: ClipPretrainSettings) -> Tuple[nn.Module, List[dict]]:
    """Train the CLIP model of ``config`` (random init) on the scene pool.

    Args:
        pool: Pretraining scenes.
        config: Model configuration (architecture, overrides, normalisation).
        settings: Optimisation settings.

    Returns:
        The trained open_clip model (eval mode) and a per-25-steps loss history.
    """
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = load_clip_model(config)
    encoder = ClipDenseEncoder(model.visual)
    model.requires_grad_(True)  # ClipDenseEncoder freezes the tower it wraps
    tokenizer = build_clip_tokenizer(config)
    texts, targets = build_dense_vocabulary()
    captions, caption_objects = build_captions()
    all_tokens = tokenizer(texts + captions)  # (T + K, context)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    history, started = [], time.perf_counter()
    for step in range(settings.steps):
        for group in optimizer.param_groups:
            group['lr'] = schedule_lr(step, settings)
        images, part_ids, objects = draw_clip_batch(pool, rng, settings.batch_size, config)
        tokens = encoder(images)  # (B, P, E)
        text = model.encode_text(all_tokens)  # (T + K, E)
        scale = model.logit_scale.exp().clamp(max=100.0)
        fractions = patch_part_fractions(part_ids, targets.shape[0])  # (B, P, I)
        dense_loss = compute_dense_loss(tokens, fractions, text[:len(texts)], targets, scale,
                                        settings.object_weight)
        choice = (torch.from_numpy(rng.integers(0, CAPTIONS_PER_OBJECT, len(objects)))
                  + CAPTIONS_PER_OBJECT * objects)  # (B,)
        caption_loss = compute_caption_loss(tokens.mean(dim=1), text[len(texts):][choice],
                                            caption_objects[choice], scale)
        loss = dense_loss + settings.caption_weight * caption_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == settings.steps - 1:
            history.append({'step': step, 'dense': round(dense_loss.item(), 4),
                            'caption': round(caption_loss.item(), 4),
                            'elapsed_s': round(time.perf_counter() - started, 1)})
            LOGGER.info('clip %s', history[-1])
    return model.eval(), history
