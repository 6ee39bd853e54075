"""Build an AffordanceGrounder from a config: backbones, prompt tables and head."""

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

from affordance_grounding.config import ModelConfig
from affordance_grounding.model.backbones import (
    build_clip_tokenizer, ClipDenseEncoder, DinoKeyEncoder, encode_prompts, load_clip_model,
    load_dino_model)
from affordance_grounding.model.grounding import AffordanceGrounder
from affordance_grounding.model.head import AffordanceHead
from affordance_grounding.vocabulary import build_item_prompt, build_person_prompt
import torch


def build_prompt_tables(clip_model: torch.nn.Module, config: ModelConfig,
                        labels: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
    """Encode the item and person prompts of every label once (docs/method.md, "Model").

    Args:
        clip_model: open_clip model with its text tower.
        config: Model configuration (architecture name for the tokenizer, labels).
        labels: Labels to encode; defaults to ``config.labels``.

    Returns:
        ``{'item': (C, E), 'person': (C, E)}`` float32 embeddings, not normalised.
    """
    labels = tuple(labels or config.labels)
    tokenizer = build_clip_tokenizer(config)
    return {
        'item': encode_prompts(clip_model, tokenizer, [build_item_prompt(x) for x in labels]),
        'person': encode_prompts(clip_model, tokenizer, [build_person_prompt(x) for x in labels]),
    }


def build_grounder(config: ModelConfig,
                   head_state: Optional[Dict[str, torch.Tensor]] = None,
                   item_text: Optional[torch.Tensor] = None,
                   backbone_states: Optional[Dict[str, Dict[str, torch.Tensor]]] = None,
                   weights_source: str = 'the bundle') -> AffordanceGrounder:
    """Create the inference network.

    Args:
        config: Model configuration.
        head_state: AffordanceHead state dict; None leaves the head randomly initialised.
        item_text: (C, E) item-prompt embeddings; None encodes them with the CLIP text tower.
        backbone_states: Optional ``{'clip': ..., 'dino': ...}`` state dicts that replace the
            configured weight sources: ``clip`` is the CLIP image tower (``model.visual``),
            ``dino`` the timm ViT (bundles with embedded backbones, official checkpoints).
        weights_source: Where ``backbone_states`` come from, for the log.

    Returns:
        The grounder in eval mode on the CPU.
    """
    backbone_states = backbone_states or {}
    clip_config = config
    if 'clip' in backbone_states:
        if item_text is None:
            raise ValueError('embedded CLIP image-tower weights need a stored item-prompt table '
                             '(the text tower is not part of an inference bundle)')
        clip_config = dataclasses.replace(config, clip_weights=None)
    clip_model = load_clip_model(clip_config,
                                 weights_source if 'clip' in backbone_states else None)
    if 'clip' in backbone_states:
        clip_model.visual.load_state_dict(backbone_states['clip'], strict=True)
    if item_text is None:
        item_text = build_prompt_tables(clip_model, config)['item']
    return assemble_grounder(config, clip_model, item_text, head_state,
                             backbone_states.get('dino'), weights_source)


def build_grounder_with_tables(
        config: ModelConfig) -> Tuple[AffordanceGrounder, Dict[str, torch.Tensor]]:
    """Create a grounder from named weights and return both prompt tables (for training)."""
    clip_model = load_clip_model(config)
    tables = build_prompt_tables(clip_model, config)
    return assemble_grounder(config, clip_model, tables['item']), tables


def assemble_grounder(config: ModelConfig, clip_model: torch.nn.Module,
                      item_text: torch.Tensor,
                      head_state: Optional[Dict[str, torch.Tensor]] = None,
                      dino_state: Optional[Dict[str, torch.Tensor]] = None,
                      dino_source: str = 'the bundle') -> AffordanceGrounder:
    """Put a loaded CLIP model, the DINO backbone and a head together (eval mode, CPU).

    ``dino_source`` names where ``dino_state`` came from, for the log.
    """
    dino_config = config
    if dino_state is not None:
        dino_config = dataclasses.replace(config, dino_weights=None)
    dino_model = load_dino_model(dino_config, dino_source if dino_state is not None else None)
    if dino_state is not None:
        dino_model.load_state_dict(dino_state, strict=True)
    dino = DinoKeyEncoder(dino_model)
    head = AffordanceHead(dino.width, len(config.labels), config.head_hidden_ratio)
    if head_state is not None:
        head.load_state_dict(head_state, strict=True)
    grounder = AffordanceGrounder(config, ClipDenseEncoder(clip_model.visual), dino, head,
                                  item_text)
    return grounder.eval()
