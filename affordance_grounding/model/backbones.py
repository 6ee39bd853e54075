"""Frozen backbones: ClearCLIP dense patch features (open_clip) and DINO keys (timm).

Both libraries are used as they are; only the last transformer block is re-written, because
neither library exposes the ClearCLIP path nor the block-12 keys (docs/method.md, "Model").
"""

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple
import warnings

from affordance_grounding.config import ModelConfig
import torch
from torch import nn
import torch.nn.functional as F

LOGGER = logging.getLogger(__name__)
RANDOM_INIT_NOTICE = 'No pretrained weights loaded'  # open_clip, on every weights-less create


def _is_not_random_init_notice(record: logging.LogRecord) -> bool:
    """Log filter: keep every record except open_clip's random-initialisation notice."""
    return not record.getMessage().startswith(RANDOM_INIT_NOTICE)


@contextlib.contextmanager
def _without_random_init_notice() -> Iterator[None]:
    """Silence open_clip's notice while building a model whose weights we load ourselves.

    open_clip logs it on the root logger (older releases used ``warnings.warn``), so both
    are filtered, only for the duration of the call.
    """
    root = logging.getLogger()
    root.addFilter(_is_not_random_init_notice)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message=RANDOM_INIT_NOTICE)
            yield
    finally:
        root.removeFilter(_is_not_random_init_notice)


class WeightsUnavailableError(RuntimeError):
    """Raised when pretrained backbone weights can be neither found locally nor downloaded."""


def _looks_like_path(weights: str) -> bool:
    """Return True when a weights spec names a file rather than a library tag."""
    return os.sep in weights or Path(weights).suffix in ('.pt', '.pth', '.bin', '.safetensors')


def _require_file(path: str, what: str) -> None:
    """Raise FileNotFoundError with a fix when a configured weights file is missing."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f'{what} weights file not found: {path}. Fix the path in the model config '
            f'or set it to a library tag to load from the hub cache.')


def load_clip_model(config: ModelConfig, weights_source: Optional[str] = None) -> nn.Module:
    """Create the open_clip model (image and text towers) named by the config.

    Args:
        config: Model configuration (``clip_model``, ``clip_weights``, ``clip_overrides``).
        weights_source: With ``clip_weights`` null, where the caller will load the weights
            from (``the bundle``, ``the official checkpoint``), for the log; None means the
            model stays random (test configs).

    Returns:
        The open_clip ``CLIP`` module in eval mode on the CPU.

    Raises:
        WeightsUnavailableError: If a pretrained tag cannot be loaded (typically offline).
        FileNotFoundError: If ``clip_weights`` names a file that does not exist.
    """
    import open_clip  # heavy import, only needed when a model is built

    weights = config.clip_weights
    kwargs: Dict[str, Any] = dict(config.clip_overrides)
    if weights is None:
        with _without_random_init_notice():
            model = open_clip.create_model(config.clip_model, pretrained=None,
                                           cache_dir=config.cache_dir, **kwargs)
        LOGGER.info('CLIP %s: %s', config.clip_model, f'weights from {weights_source}'
                    if weights_source else 'random weights (clip_weights is null)')
        return model.eval()
    if not Path(weights).is_file():
        known_tags = open_clip.list_pretrained_tags_by_model(config.clip_model)
        if _looks_like_path(weights) or weights not in known_tags:
            raise FileNotFoundError(
                f'CLIP weights {weights!r} are neither an existing file nor a pretrained tag of '
                f'{config.clip_model!r} (known tags: {", ".join(known_tags) or "none"}); fix '
                f'clip_weights in the model config')
    try:
        model = open_clip.create_model(
            config.clip_model, pretrained=weights, cache_dir=config.cache_dir, **kwargs)
    except (RuntimeError, OSError) as error:
        if Path(weights).is_file():
            raise
        source = (open_clip.get_pretrained_cfg(config.clip_model, weights) or {}).get('hf_hub')
        source = (source or '').rstrip('/') or 'unknown'
        raise WeightsUnavailableError(
            f'could not load CLIP weights {weights!r} for {config.clip_model!r}: {error}. '
            f'This machine may be offline. Either run once with network access '
            f'(open_clip caches them under $HF_HOME, hub repo {source}), or download '
            f'open_clip_pytorch_model.bin from that repo and set clip_weights to its path.'
        ) from error
    kind = 'file' if Path(weights).is_file() else 'pretrained tag'
    LOGGER.info('CLIP %s: weights from %s %s', config.clip_model, kind, weights)
    return model.eval()


def load_dino_model(config: ModelConfig, weights_source: Optional[str] = None) -> nn.Module:
    """Create the timm ViT used as the DINO backbone, without a classifier head.

    Args:
        config: Model configuration (``dino_model``, ``dino_weights``, ``dino_overrides``).
        weights_source: As for :func:`load_clip_model` (logged when ``dino_weights`` is null).

    Returns:
        The timm ``VisionTransformer`` in eval mode on the CPU.

    Raises:
        WeightsUnavailableError: If the hub weights cannot be loaded (typically offline).
        FileNotFoundError: If ``dino_weights`` names a file that does not exist.
    """
    import timm  # heavy import, only needed when a model is built

    weights = config.dino_weights
    kwargs: Dict[str, Any] = dict(config.dino_overrides)
    kwargs['num_classes'] = 0
    if weights is None:
        LOGGER.info('DINO %s: %s', config.dino_model, f'weights from {weights_source}'
                    if weights_source else 'random weights (dino_weights is null)')
        return timm.create_model(config.dino_model, pretrained=False, **kwargs).eval()
    if weights != 'pretrained':
        _require_file(weights, 'DINO')
        kwargs['pretrained_cfg_overlay'] = {'file': weights}
    try:
        model = timm.create_model(config.dino_model, pretrained=True, **kwargs).eval()
    except (RuntimeError, OSError) as error:
        if weights != 'pretrained':
            raise
        cfg = timm.models.get_pretrained_cfg(config.dino_model)
        raise WeightsUnavailableError(
            f'could not load DINO weights for {config.dino_model!r}: {error}. This machine '
            f'may be offline. Either run once with network access (timm caches them under '
            f'$HF_HOME, hub repo {getattr(cfg, "hf_hub_id", None)}), or download '
            f'{getattr(cfg, "url", None) or "the checkpoint"} and set dino_weights to its path.'
        ) from error
    LOGGER.info('DINO %s: weights from %s', config.dino_model,
                'the timm hub cache' if weights == 'pretrained' else f'file {weights}')
    return model


def _freeze(module: nn.Module) -> None:
    """Put a backbone in eval mode and stop gradients into it."""
    module.eval()
    module.requires_grad_(False)


class ClipDenseEncoder(nn.Module):
    """Frozen CLIP image tower returning ClearCLIP dense patch features.

    Blocks 1..L-1 run unchanged. The last block is replaced by the ClearCLIP path: LN1, q and
    v from the block's own ``in_proj``, query-query attention, ``out_proj``, no residual and no
    MLP; then ``ln_post`` on every token and ``proj``. The ordinary last-block output is never
    computed.
    """

    def __init__(self, visual: nn.Module):
        """Wrap an open_clip ``VisionTransformer`` (``model.visual``)."""
        super().__init__()
        self.visual = visual
        last = visual.transformer.resblocks[-1]
        self.num_heads = last.attn.num_heads
        self.width = last.attn.embed_dim
        self.embed_dim = visual.proj.shape[1]
        self.patch_size = visual.conv1.kernel_size[0]
        _freeze(self)

    def train(self, mode: bool = True) -> 'ClipDenseEncoder':
        """Keep the frozen tower in eval mode whatever the parent module does."""
        return super().train(False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Compute dense patch features.

        Args:
            image: (N, 3, H, W) float tensor, normalised as the model config says.

        Returns:
            (N, P, E) patch features (P = (H/16)*(W/16), E = CLIP embed dim, 512 for ViT-B/16),
            not L2-normalised.
        """
        visual = self.visual
        tokens = visual._embeds(image)  # (N, T, W), T = 1 + P
        for block in visual.transformer.resblocks[:-1]:
            tokens = block(tokens)
        dense = self._clearclip_block(tokens)  # (N, T, W)
        dense = visual.ln_post(dense) @ visual.proj  # (N, T, E)
        return dense[:, 1:]  # drop the class token -> (N, P, E)

    def _clearclip_block(self, tokens: torch.Tensor) -> torch.Tensor:
        """Last block as ClearCLIP: out_proj(softmax(q q^T / sqrt(d)) v), no residual/FFN."""
        block = self.visual.transformer.resblocks[-1]
        attn = block.attn
        width, heads = self.width, self.num_heads
        hidden = block.ln_1(tokens)  # (N, T, W)
        weight, bias = attn.in_proj_weight, attn.in_proj_bias
        query = F.linear(hidden, weight[:width], bias[:width])
        value = F.linear(hidden, weight[2 * width:], bias[2 * width:])
        batch, length, _ = hidden.shape
        query = query.view(batch, length, heads, width // heads).transpose(1, 2)  # (N,h,T,d)
        value = value.view(batch, length, heads, width // heads).transpose(1, 2)  # (N,h,T,d)
        mixed = F.scaled_dot_product_attention(query, query, value)  # (N, h, T, d)
        mixed = mixed.transpose(1, 2).reshape(batch, length, width)  # (N, T, W)
        return attn.out_proj(mixed)


class DinoKeyEncoder(nn.Module):
    """Frozen DINO ViT returning last-block keys and, on request, the CLS attention.

    Descriptor channels follow the reference layout ``d * heads + h`` (head index fastest),
    which the released SelectiveCL heads were trained with (docs/method.md, "Model").
    """

    def __init__(self, vit: nn.Module):
        """Wrap a timm ``VisionTransformer`` built with ``num_classes=0``."""
        super().__init__()
        self.vit = vit
        attn = vit.blocks[-1].attn
        self.num_heads = attn.num_heads
        self.width = attn.qkv.in_features
        self.num_prefix_tokens = vit.num_prefix_tokens
        self.patch_size = vit.patch_embed.patch_size[0]
        _freeze(self)

    def train(self, mode: bool = True) -> 'DinoKeyEncoder':
        """Keep the frozen backbone in eval mode whatever the parent module does."""
        return super().train(False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return patch keys of the last block, (N, P, D) with channel index d*heads + h."""
        keys, _ = self._keys_and_queries(image, need_queries=False)
        return self._to_descriptors(keys)

    def forward_with_attention(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return patch keys (N, P, D) and CLS-to-patch attention (N, heads, P).

        The attention is the last block's softmax(q k^T / sqrt(d)) row of the class token over
        all tokens, restricted to the patch columns (used for the DINO saliency map).
        """
        keys, queries = self._keys_and_queries(image, need_queries=True)
        scale = keys.shape[-1] ** -0.5
        cls_query = queries[:, :, :1]  # (N, h, 1, d)
        logits = (cls_query @ keys.transpose(-2, -1)) * scale  # (N, h, 1, T)
        attention = logits.softmax(dim=-1)[:, :, 0, self.num_prefix_tokens:]  # (N, h, P)
        return self._to_descriptors(keys), attention

    def _keys_and_queries(self, image: torch.Tensor, need_queries: bool):
        """Run blocks 1..L-1, then LN1 and the needed rows of the last block's qkv."""
        vit = self.vit
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(image))))
        for block in vit.blocks[:-1]:
            tokens = block(tokens)
        last = vit.blocks[-1]
        hidden = last.norm1(tokens)  # (N, T, D)
        weight, bias = last.attn.qkv.weight, last.attn.qkv.bias
        width, heads = self.width, self.num_heads
        batch, length, _ = hidden.shape

        def project(rows: slice) -> torch.Tensor:
            part_bias = None if bias is None else bias[rows]
            out = F.linear(hidden, weight[rows], part_bias)  # (N, T, D)
            return out.view(batch, length, heads, width // heads).transpose(1, 2)  # (N,h,T,d)

        keys = last.attn.k_norm(project(slice(width, 2 * width)))
        queries = last.attn.q_norm(project(slice(0, width))) if need_queries else None
        return keys, queries

    def _to_descriptors(self, keys: torch.Tensor) -> torch.Tensor:
        """(N, h, T, d) keys -> (N, P, d*h) patch descriptors, channel index d*heads + h."""
        batch, heads, length, dim = keys.shape
        descriptors = keys.permute(0, 2, 3, 1).reshape(batch, length, dim * heads)  # (N,T,D)
        return descriptors[:, self.num_prefix_tokens:]  # (N, P, D)


def encode_prompts(clip_model: nn.Module, tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Encode prompts with the CLIP text tower.

    Args:
        clip_model: open_clip ``CLIP`` model.
        tokenizer: Its tokenizer (``open_clip.get_tokenizer``).
        prompts: Prompt strings.

    Returns:
        (len(prompts), E) float32 text embeddings, not normalised (every use normalises).
    """
    device = next(clip_model.parameters()).device
    tokens = tokenizer(list(prompts)).to(device)  # (K, 77)
    with torch.inference_mode():
        return clip_model.encode_text(tokens).float().clone()


def build_clip_tokenizer(config: ModelConfig):
    """Return the open_clip tokenizer of the configured CLIP architecture."""
    import open_clip

    context = config.clip_overrides.get('text_cfg', {}).get('context_length')
    if context is not None:
        return open_clip.get_tokenizer(config.clip_model, context_length=context)
    return open_clip.get_tokenizer(config.clip_model)
