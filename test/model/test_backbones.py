"""ClearCLIP dense tokens and DINO keys against explicit re-implementations (docs/method.md)."""

import math

from affordance_grounding.model.backbones import (
    ClipDenseEncoder, DinoKeyEncoder, load_clip_model, load_dino_model)
import pytest
import torch

ATOL = 1e-5


def _randomise_(parameters, generator, scale=0.5):
    """Overwrite parameters with known random values (biases and norms start at 0 and 1)."""
    with torch.no_grad():
        for parameter in parameters:
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


@pytest.fixture(scope='module')
def clip_encoder(tiny_config):
    """Return a tiny ClearCLIP encoder whose last-block biases and norms are non-trivial."""
    torch.manual_seed(11)
    visual = load_clip_model(tiny_config).visual
    last = visual.transformer.resblocks[-1]
    generator = torch.Generator().manual_seed(12)
    _randomise_([last.ln_1.weight, last.ln_1.bias, last.attn.in_proj_bias,
                 last.attn.out_proj.bias, visual.ln_post.weight, visual.ln_post.bias],
                generator)
    return ClipDenseEncoder(visual)


@pytest.fixture(scope='module')
def dino_encoder(tiny_config):
    """Return a tiny DINO key encoder whose last-block qkv bias and norm1 are non-trivial."""
    torch.manual_seed(13)
    vit = load_dino_model(tiny_config)
    last = vit.blocks[-1]
    generator = torch.Generator().manual_seed(14)
    _randomise_([last.norm1.weight, last.norm1.bias, last.attn.qkv.bias], generator)
    return DinoKeyEncoder(vit)


@pytest.fixture(scope='module')
def images():
    """Return two fixed random (2, 3, 224, 224) images."""
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(15))


def _explicit_softmax(logits):
    """Softmax over the last axis written out with exp and a sum."""
    shifted = torch.exp(logits - logits.amax(dim=-1, keepdim=True))
    return shifted / shifted.sum(dim=-1, keepdim=True)


def _clip_tokens_before_last_block(visual, image):
    """Patch embedding, class token, positions, ln_pre, then blocks 1..L-1."""
    patches = visual.conv1(image).flatten(2).transpose(1, 2)  # (N, P, W)
    cls = visual.class_embedding.expand(image.shape[0], 1, -1)  # (N, 1, W)
    tokens = torch.cat([cls, patches], dim=1) + visual.positional_embedding
    tokens = visual.ln_pre(tokens)
    for block in visual.transformer.resblocks[:-1]:
        tokens = block(tokens)
    return tokens  # (N, T, W)


def _clip_reference(visual, image, variant='clearclip'):
    """Last block by hand: q-q attention, no residual, no MLP; variants for the mistakes."""
    tokens = _clip_tokens_before_last_block(visual, image)
    block = visual.transformer.resblocks[-1]
    width = tokens.shape[-1]
    heads = block.attn.num_heads
    head_dim = width // heads
    weight, bias = block.attn.in_proj_weight, block.attn.in_proj_bias
    hidden = block.ln_1(tokens)
    query = hidden @ weight[:width].T + bias[:width]
    key = hidden @ weight[width:2 * width].T + bias[width:2 * width]
    value = hidden @ weight[2 * width:].T + bias[2 * width:]
    mixed = []
    for head in range(heads):
        cols = slice(head * head_dim, (head + 1) * head_dim)
        other = key if variant == 'query_key' else query
        logits = query[..., cols] @ other[..., cols].transpose(1, 2) / math.sqrt(head_dim)
        mixed.append(_explicit_softmax(logits) @ value[..., cols])  # (N, T, d)
    attended = torch.cat(mixed, dim=-1) @ block.attn.out_proj.weight.T + block.attn.out_proj.bias
    if variant == 'residual':
        attended = tokens + attended
    return (visual.ln_post(attended) @ visual.proj)[:, 1:]  # (N, P, E)


def test_clip_dense_encoder_matches_explicit_clearclip(clip_encoder, images):
    with torch.no_grad():
        actual = clip_encoder(images)
        expected = _clip_reference(clip_encoder.visual, images)
    assert actual.shape == (2, 196, 64)
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize('variant', ['query_key', 'residual'])
def test_clip_dense_encoder_reference_detects_wrong_variants(clip_encoder, images, variant):
    with torch.no_grad():
        actual = clip_encoder(images)
        wrong = _clip_reference(clip_encoder.visual, images, variant)
    assert (actual - wrong).abs().max() > 1e-3


def test_clip_dense_encoder_differs_from_ordinary_last_block(clip_encoder, images):
    visual = clip_encoder.visual
    with torch.no_grad():
        tokens = _clip_tokens_before_last_block(visual, images)
        ordinary = (visual.ln_post(visual.transformer.resblocks[-1](tokens)) @ visual.proj)[:, 1:]
        actual = clip_encoder(images)
    assert (actual - ordinary).abs().max() > 1e-3


def test_clip_dense_encoder_is_frozen_in_eval_mode(clip_encoder):
    clip_encoder.train()
    assert not clip_encoder.training
    assert not clip_encoder.visual.training
    assert all(not p.requires_grad for p in clip_encoder.parameters())
    assert (clip_encoder.num_heads, clip_encoder.width, clip_encoder.embed_dim) == (2, 64, 64)


def test_dino_to_descriptors_uses_head_fastest_channel_order(dino_encoder):
    batch, heads, length, dim = 2, 6, 5, 4
    n = torch.arange(batch, dtype=torch.float64).view(batch, 1, 1, 1)
    h = torch.arange(heads, dtype=torch.float64).view(1, heads, 1, 1)
    t = torch.arange(length, dtype=torch.float64).view(1, 1, length, 1)
    d = torch.arange(dim, dtype=torch.float64).view(1, 1, 1, dim)
    tagged = n * 1e6 + t * 1e4 + h * 1e2 + d  # (N, h, T, d), value encodes (n, t, h, d)
    descriptors = dino_encoder._to_descriptors(tagged)
    assert descriptors.shape == (batch, length - 1, dim * heads)
    for image in range(batch):
        for patch in range(length - 1):
            for channel in range(dim * heads):
                expected = (image * 1e6 + (patch + 1) * 1e4 + (channel % heads) * 1e2
                            + channel // heads)
                assert descriptors[image, patch, channel].item() == expected


def _dino_last_block_inputs(vit, image):
    """Patch embedding, class token, positions and blocks 1..L-1 by hand."""
    patches = vit.patch_embed.proj(image).flatten(2).transpose(1, 2)  # (N, P, D)
    cls = vit.cls_token.expand(image.shape[0], 1, -1)  # (N, 1, D)
    tokens = torch.cat([cls, patches], dim=1) + vit.pos_embed
    for block in vit.blocks[:-1]:
        tokens = block(tokens)
    return tokens  # (N, T, D)


def _dino_reference(vit, image):
    """Return per-head (N, T, D) q and k of the last block from norm1 and the qkv rows."""
    tokens = _dino_last_block_inputs(vit, image)
    last = vit.blocks[-1]
    width = tokens.shape[-1]
    hidden = last.norm1(tokens)
    weight, bias = last.attn.qkv.weight, last.attn.qkv.bias
    query = hidden @ weight[:width].T + bias[:width]
    key = hidden @ weight[width:2 * width].T + bias[width:2 * width]
    return query, key


def test_dino_key_encoder_matches_explicit_keys(dino_encoder, images):
    heads, width = 6, 48
    head_dim = width // heads
    with torch.no_grad():
        actual = dino_encoder(images)
        _, key = _dino_reference(dino_encoder.vit, images)
    assert actual.shape == (2, 196, width)
    expected = torch.empty_like(actual)
    for head in range(heads):
        for dim in range(head_dim):
            expected[:, :, dim * heads + head] = key[:, 1:, head * head_dim + dim]
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def test_dino_cls_attention_matches_explicit_softmax(dino_encoder, images):
    heads, width = 6, 48
    head_dim = width // heads
    with torch.no_grad():
        keys, attention = dino_encoder.forward_with_attention(images)
        query, key = _dino_reference(dino_encoder.vit, images)
        plain_keys = dino_encoder(images)
    assert attention.shape == (2, heads, 196)
    torch.testing.assert_close(keys, plain_keys, atol=0, rtol=0)
    for head in range(heads):
        cols = slice(head * head_dim, (head + 1) * head_dim)
        logits = (query[:, :1, cols] @ key[:, :, cols].transpose(1, 2))[:, 0]  # (N, T)
        full_row = _explicit_softmax(logits / math.sqrt(head_dim))  # (N, T)
        torch.testing.assert_close(attention[:, head], full_row[:, 1:], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(attention[:, head].sum(dim=1), 1.0 - full_row[:, 0],
                                   atol=1e-5, rtol=0)
    assert (attention > 0).all()


def test_dino_key_encoder_is_frozen_in_eval_mode(dino_encoder):
    dino_encoder.train()
    assert not dino_encoder.training
    assert not dino_encoder.vit.training
    assert all(not p.requires_grad for p in dino_encoder.parameters())
    assert (dino_encoder.num_heads, dino_encoder.width, dino_encoder.patch_size) == (6, 48, 16)
