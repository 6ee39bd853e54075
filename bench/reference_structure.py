"""The official test-time structure, for comparison in the same run (see docs/method.md).

Same weights and the same numbers as our graph, but computed the way the reference code does:
the item prompt is tokenised and encoded on every call, CLIP's ordinary last block is run
(and thrown away) next to the ClearCLIP path, attention is written as explicit matmuls that
also return the weights, DINO's last block is run in full, and the 3x3 local mean is a
196-iteration Python loop. Written from the specification, not from the reference code.
"""

from affordance_grounding.vocabulary import build_item_prompt
import torch
import torch.nn.functional as F


def _explicit_attention(query, key, value):
    """softmax(q k^T / sqrt(d)) v with the weights returned, as hand-written ViTs do."""
    weights = (query @ key.transpose(-2, -1) * query.shape[-1] ** -0.5).softmax(dim=-1)
    return weights @ value, weights


def _split_heads(tensor, heads):
    batch, length, width = tensor.shape
    return tensor.view(batch, length, heads, width // heads).transpose(1, 2)  # (N,h,T,d)


def reference_clip_tokens(visual, image):
    """All blocks normally, plus the ClearCLIP path on the last block's input."""
    tokens = visual._embeds(image)
    for block in visual.transformer.resblocks[:-1]:
        tokens = block(tokens)
    last = visual.transformer.resblocks[-1]
    _ = last(tokens)  # the ordinary last block, computed and discarded
    hidden = last.ln_1(tokens)
    query, key, value = F.linear(hidden, last.attn.in_proj_weight,
                                 last.attn.in_proj_bias).chunk(3, dim=-1)
    heads = last.attn.num_heads
    mixed, _ = _explicit_attention(_split_heads(query, heads), _split_heads(query, heads),
                                   _split_heads(value, heads))
    mixed = mixed.transpose(1, 2).reshape(hidden.shape)
    dense = visual.ln_post(last.attn.out_proj(mixed)) @ visual.proj
    return dense[:, 1:]


def reference_dino_keys(vit, image):
    """Blocks 1..L-1, then the whole last block with keys and attention kept."""
    tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(image))))
    for block in vit.blocks[:-1]:
        tokens = block(tokens)
    last = vit.blocks[-1]
    hidden = last.norm1(tokens)
    heads = last.attn.num_heads
    query, key, value = [_split_heads(part, heads)
                         for part in last.attn.qkv(hidden).chunk(3, dim=-1)]
    _, _attention = _explicit_attention(query, key, value)
    _ = last(tokens)  # the full last block, computed and discarded
    batch, _, length, dim = key.shape
    return key.permute(0, 2, 3, 1).reshape(batch, length, dim * heads)[:, 1:]


def looped_local_mean(cam):
    """3x3 valid-neighbour mean, one pixel at a time (the reference's 196-slice loop)."""
    grid = cam.shape[-1]
    out = torch.empty_like(cam)
    for row in range(grid):
        for col in range(grid):
            patch = cam[..., max(row - 1, 0):row + 2, max(col - 1, 0):col + 2]
            out[..., row, col] = patch.mean(dim=(-2, -1))
    return out


@torch.inference_mode()
def reference_test_forward(grounder, clip_model, tokenizer, image, label_index):
    """Return maps (1) cam, (2) minmax(S)*cam, (3) minmax(S)*LM(cam) for one image."""
    label = grounder.labels[label_index]
    tokens = tokenizer([build_item_prompt(label)]).to(image.device)
    text = clip_model.encode_text(tokens)  # per call
    patches = reference_clip_tokens(clip_model.visual, image)  # (1, P, E)
    cosine = F.cosine_similarity(patches, text[:, None], dim=-1)  # (1, P)
    grid = grounder.grid
    cosine = cosine.view(1, grid, grid)
    affinity = (cosine - cosine.min()) / (cosine.max() - cosine.min())
    keys = reference_dino_keys(grounder.dino.vit, image)
    cam = grounder.head(keys, grid)[:, label_index]  # (1, G, G)
    return cam, affinity * cam, affinity * looped_local_mean(cam)
