"""Tests for training.pretrain: crops and token matching, targets, losses, save/load round trip."""

import dataclasses
import json
from pathlib import Path

from affordance_grounding.config import load_model_config
from affordance_grounding.model.factory import build_grounder
from affordance_grounding.vocabulary import build_item_prompt, build_person_prompt
import numpy as np
import pytest
import torch
from training import pretrain_backbones
from training.pretrain import clip_pretrain, scenes
from training.pretrain.probe import compute_auc, majority_per_patch
import yaml

REPO = Path(__file__).resolve().parents[2]


def build_untrained_distillation_net():
    """Build the synthetic DINO architecture, randomly initialised (seed 0), for training."""
    from training.pretrain import dino_pretrain

    config = load_model_config(str(REPO / 'config' / 'model_synthetic.yaml'))
    config = dataclasses.replace(config, clip_weights=None, dino_weights=None)
    torch.manual_seed(0)
    return dino_pretrain.SelfDistillationNet(dino_pretrain.build_dino_vit(config),
                                             dino_pretrain.DinoPretrainSettings())


@pytest.fixture(scope='module')
def pool():
    """Render one egocentric scene per Seen and Unseen pair, then two exocentric ones."""
    return scenes.render_pool(len(scenes.PAIRS) + len(scenes.UNSEEN_PAIRS) + 2, seed=99)


def test_render_pool_labels_every_object_pixel_with_its_objects_parts(pool):
    """Part ids belong to the scene's object and cover a plausible share of the image."""
    assert pool.images.shape[1:] == (scenes.RENDER_SIZE, scenes.RENDER_SIZE, 3)
    assert pool.is_exo.any() and (~pool.is_exo).any()
    for ids, object_id in zip(pool.part_ids, pool.object_ids):
        present = set(np.unique(ids).tolist()) - {0}
        names = {scenes.PART_KEYS[part_id - 1][0] for part_id in present}
        assert names == {scenes.OBJECT_NAMES[object_id]}
        assert 0.01 < (ids > 0).mean() < 0.5


def test_match_tokens_pairs_tokens_that_show_the_same_pixels(pool):
    """Matched tokens of two crops show identical pixels (mirrored when one is flipped)."""
    rng = np.random.default_rng(3)
    indices = np.arange(len(pool))
    first = scenes.crop_scenes(pool, indices, 224, rng)
    second = scenes.crop_scenes(pool, indices, 224, rng)
    match = scenes.match_tokens(first.cells, second.cells)  # (B, P)
    assert (match >= 0).float().mean() > 0.5  # 224 of 256 px: most cells shared
    patches_a = first.images.unfold(2, 16, 16).unfold(3, 16, 16)  # (B, 3, 14, 14, 16, 16)
    patches_b = second.images.unfold(2, 16, 16).unfold(3, 16, 16)
    for b in range(len(indices)):
        for token in range(0, 196, 7):
            other = int(match[b, token])
            if other < 0:
                continue
            tile_a = patches_a[b, :, token // 14, token % 14]
            tile_b = patches_b[b, :, other // 14, other % 14]
            same = torch.equal(tile_a, tile_b) or torch.equal(tile_a, tile_b.flip(-1))
            assert same, (b, token, other)


def test_patch_part_fractions_sum_to_one_and_count_pixels():
    """Fractions are pixel shares per patch."""
    ids = torch.zeros(1, 32, 32, dtype=torch.long)
    ids[0, :8, :16] = 2  # half of the top-left patch
    fractions = scenes.patch_part_fractions(ids, 3)  # (1, 4, 3)
    assert torch.allclose(fractions.sum(-1), torch.ones(1, 4))
    assert torch.allclose(fractions[0, 0], torch.tensor([0.5, 0.0, 0.5]))
    assert torch.allclose(fractions[0, 3], torch.tensor([1.0, 0.0, 0.0]))


def test_dense_targets_are_object_level_never_part_level():
    """Every part of an object targets the same texts: its name and all its actions' prompts."""
    texts, targets = clip_pretrain.build_dense_vocabulary()
    assert torch.allclose(targets.sum(dim=1), torch.ones(targets.shape[0]))
    blade = scenes.PART_KEYS.index(('knife', 'blade')) + 1
    handle = scenes.PART_KEYS.index(('knife', 'handle')) + 1
    body = scenes.PART_KEYS.index(('cup', 'body')) + 1
    assert torch.equal(targets[blade], targets[handle])
    for affordance in ('cut_with', 'hold'):
        assert targets[blade, texts.index(build_item_prompt(affordance))] > 0
        assert targets[blade, texts.index(build_person_prompt(affordance))] > 0
    assert targets[blade, texts.index(build_item_prompt('drink_with'))] == 0
    assert targets[body, texts.index(build_item_prompt('drink_with'))] > 0
    assert targets[body, texts.index('a cup')] > 0
    assert targets[0, texts.index(clip_pretrain.BACKGROUND_TEXT)] == 1.0
    part_names = {part for _, part in scenes.PART_KEYS}
    for text in texts + clip_pretrain.build_captions()[0]:
        assert not any(f' {part} ' in f' {text.strip(".")} ' for part in part_names), text


def test_unseen_objects_get_the_prompts_of_their_analogous_actions():
    """A cleaver (Unseen) is cut_with and hold, as a knife is."""
    texts, targets = clip_pretrain.build_dense_vocabulary()
    cleaver = scenes.PART_KEYS.index(('cleaver', 'handle')) + 1
    assert targets[cleaver, texts.index(build_item_prompt('cut_with'))] > 0
    assert targets[cleaver, texts.index(build_item_prompt('hold'))] > 0


def test_student_cls_attention_is_the_attention_the_grounder_reads():
    """The pretraining's CLS attention equals DinoKeyEncoder.forward_with_attention's."""
    from affordance_grounding.model.backbones import DinoKeyEncoder

    net = build_untrained_distillation_net().eval()
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        net(images, with_patches=True)
        ours = net.cls_attention()
        _, reference = DinoKeyEncoder(net.vit).forward_with_attention(images)
    assert torch.allclose(ours, reference, atol=1e-5)


def test_query_only_objectness_leaves_the_last_block_keys_untouched():
    """With detach_keys the objectness gradient reaches the query weights, not the key weights."""
    from training.pretrain import dino_pretrain

    net = build_untrained_distillation_net()
    ids = torch.zeros(1, 224, 224, dtype=torch.long)
    ids[0, 64:128, 64:128] = 3
    width = net.vit.embed_dim
    grads = {}
    for detach in (False, True):
        net.zero_grad(set_to_none=True)
        net(torch.rand(1, 3, 224, 224), with_patches=False)
        dino_pretrain.compute_objectness_loss(net.cls_attention(detach), ids).backward()
        grads[detach] = net.vit.blocks[-1].attn.qkv.weight.grad.clone()
    assert grads[False][width:2 * width].abs().sum() > 0
    assert grads[True][width:2 * width].abs().sum() == 0
    assert grads[True][:width].abs().sum() > 0


def test_every_objectness_target_prefers_attention_on_the_object():
    """Each objectness target scores attention on the object below attention on clutter."""
    from training.pretrain import dino_pretrain

    ids = torch.zeros(1, 32, 32, dtype=torch.long)
    ids[0, :16, :16] = 3  # the object fills patch 0 of a 2 x 2 grid
    on_object = torch.full((1, 6, 4), 0.01)
    on_object[..., 0] = 0.97
    on_background = torch.full((1, 6, 4), 0.01)
    on_background[..., 3] = 0.97
    for kind in dino_pretrain.OBJECTNESS_TARGETS:
        assert (dino_pretrain.compute_objectness_loss(on_object, ids, kind)
                < dino_pretrain.compute_objectness_loss(on_background, ids, kind)), kind
    assert torch.equal(dino_pretrain.compute_objectness_loss(on_object, ids),
                       dino_pretrain.compute_objectness_loss(on_object, ids, 'uniform'))
    with pytest.raises(ValueError, match='objectness target'):
        dino_pretrain.compute_objectness_loss(on_object, ids, 'nonsense')


def test_threshold_hinge_is_zero_once_the_saliency_binarisation_is_right():
    """No loss when object patches sit a margin above 1/P and clutter a margin below."""
    from training.pretrain import dino_pretrain

    share = torch.tensor([[1.0, 1.0, 0.3, 0.0, 0.0, 0.0]])  # two object, one mixed, three clutter
    margin = 0.5
    high, low = np.exp(margin + 0.1) / 6, np.exp(-margin - 0.1) / 6
    right = torch.tensor([[[high, high, 0.5, low, low, low]]])
    wrong = torch.tensor([[[low, low, 0.5, high, high, high]]])
    assert float(dino_pretrain.compute_threshold_hinge(right, share, margin)) == 0.0
    assert float(dino_pretrain.compute_threshold_hinge(wrong, share, margin)) > 2 * margin
    mixed_only = torch.tensor([[[high, high, 50.0, low, low, low]]])  # mixed patch ignored
    assert float(dino_pretrain.compute_threshold_hinge(mixed_only, share, margin)) == 0.0


def test_token_masks_replace_the_patch_embeddings_of_the_student_only_when_asked():
    """Masked tokens carry the mask token; the unmasked forward is the plain timm ViT."""
    from training.pretrain import dino_pretrain

    net = build_untrained_distillation_net().eval()
    images = torch.rand(2, 3, 224, 224)
    masks = dino_pretrain.draw_token_masks(64, 196, 0.5, torch.Generator().manual_seed(0))
    shares = masks.float().mean(dim=1)
    assert (shares == 0).sum() > 10 and (shares > 0).sum() > 10
    assert float(shares.max()) < 0.65
    assert dino_pretrain.draw_token_masks(2, 196, 0.0, torch.Generator()) is None
    with torch.no_grad():
        plain = net(images, with_patches=True)
        assert torch.allclose(plain[0], net.cls_head(net.vit(images)), atol=1e-6)
        masked = net(images, with_patches=True, token_mask=masks[:2] | True)
        again = net(images, with_patches=True)
    assert not torch.allclose(masked[1], plain[1])
    assert torch.equal(again[1], plain[1])  # the mask does not outlive its forward
    assert 'mask_token' not in net.vit.state_dict()


def test_key_projection_only_objectness_reaches_the_key_weights_but_not_earlier_keys():
    """detach_key_inputs: same attention; the key projection learns, block inputs do not."""
    from training.pretrain import dino_pretrain

    net = build_untrained_distillation_net()
    ids = torch.zeros(1, 224, 224, dtype=torch.long)
    ids[0, 64:128, 64:128] = 3
    images = torch.rand(1, 3, 224, 224)
    width = net.vit.embed_dim
    net(images, with_patches=False)
    assert torch.allclose(net.cls_attention(), net.cls_attention(detach_key_inputs=True),
                          atol=1e-6)
    patch_row_grads = {}
    for detach in (False, True):
        net.zero_grad(set_to_none=True)
        net(images, with_patches=False)
        net._qkv_input.retain_grad()
        dino_pretrain.compute_objectness_loss(net.cls_attention(detach_key_inputs=detach), ids,
                                              'threshold').backward()
        assert net.vit.blocks[-1].attn.qkv.weight.grad[width:2 * width].abs().sum() > 0
        # Patch rows of the last block's input reach the attention only through the keys.
        patch_row_grads[detach] = net._qkv_input.grad[:, 1:].abs().sum()
    assert patch_row_grads[False] > 0
    assert patch_row_grads[True] == 0


def test_caption_loss_prefers_matching_groups():
    """Aligned image-caption pairs cost less than shifted ones."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(6, 8, generator=generator)
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    matched = clip_pretrain.compute_caption_loss(image, image, groups, torch.tensor(10.0))
    shuffled = clip_pretrain.compute_caption_loss(image, image.roll(2, 0), groups,
                                                  torch.tensor(10.0))
    assert matched < shuffled


def test_dense_loss_is_lower_when_patches_point_at_their_targets():
    """Tokens equal to their target text give a near-zero loss."""
    targets = torch.eye(3)
    text = torch.eye(3)
    fractions = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])  # (1, 3, 3)
    right = clip_pretrain.compute_dense_loss(torch.eye(3)[None], fractions, text, targets,
                                             torch.tensor(10.0), 3.0)
    wrong = clip_pretrain.compute_dense_loss(torch.eye(3).roll(1, 0)[None], fractions, text,
                                             targets, torch.tensor(10.0), 3.0)
    assert right < 0.01 < wrong


def test_compute_auc_matches_pair_counting_with_ties():
    """AUC equals counting positive-negative pairs (ties count one half)."""
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.4])
    positive = torch.tensor([False, True, False, True, False])
    assert compute_auc(scores, positive) == pytest.approx(5.5 / 6)


def test_majority_per_patch_needs_half_the_patch_on_the_object():
    """A patch is a part only when the object covers half of it."""
    ids = np.zeros((32, 32), np.int64)
    ids[:16, :9] = 1  # 9/16 of patch 0 is part 1
    ids[16:, 16:] = 2
    ids[16:24, 16:20] = 1  # patch 3: mostly part 2
    ids[:16, 16:20] = 2  # patch 1: a quarter part 2 -> background
    assert majority_per_patch(ids, 3).tolist() == [1, 0, 0, 2]


@pytest.mark.slow  # pretrains both backbones: make test, not make test-fast
def test_pretrain_cli_writes_weights_the_model_config_loads(tmp_path):
    """Weights written by the CLI load through build_grounder unchanged (float16 CLIP)."""
    config = yaml.safe_load((REPO / 'config' / 'model_synthetic.yaml').read_text())
    config['clip_weights'] = str(tmp_path / 'clip.bin')
    config['dino_weights'] = str(tmp_path / 'dino.pth')
    config_path = tmp_path / 'model.yaml'
    config_path.write_text(yaml.safe_dump(config))
    code = pretrain_backbones.main(['--config', str(config_path), '--scenes', '12',
                                    '--clip-steps', '2', '--dino-steps', '2',
                                    '--clip-batch-size', '4', '--dino-batch-size', '4',
                                    '--teacher-momentum', '0.9'])
    assert code == 0
    report = json.loads((tmp_path / 'pretrain_report.json').read_text())
    assert report['dino']['settings']['teacher_momentum'] == 0.9
    saved = torch.load(tmp_path / 'clip.bin', weights_only=True)
    grounder = build_grounder(load_model_config(str(config_path)))
    visual = grounder.clip.visual.state_dict()
    for key in ('conv1.weight', 'proj', 'transformer.resblocks.2.attn.in_proj_weight'):
        assert torch.equal(visual[key], saved['visual.' + key].float())
    dino_saved = torch.load(tmp_path / 'dino.pth', weights_only=True)
    assert torch.equal(grounder.dino.vit.state_dict()['blocks.2.attn.qkv.weight'],
                       dino_saved['blocks.2.attn.qkv.weight'])
    untrained = dataclasses.replace(load_model_config(str(config_path)), dino_weights=None)
    assert not torch.equal(build_grounder(untrained).dino.vit.state_dict()['pos_embed'],
                           dino_saved['pos_embed'])


def test_object_and_part_aucs_tell_an_object_cue_from_a_part_cue():
    """A map lighting the whole object: object AUC 1, part AUC 0.5; a part map: both high."""
    from training.pretrain.probe import probe_object_and_part

    object_mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    object_mask[0, 2:6, 2:6] = True
    acting = torch.zeros(1, 8, 8, dtype=torch.bool)
    acting[0, 2:4, 2:6] = True
    object_cue = probe_object_and_part(object_mask.float(), object_mask, acting)
    assert object_cue['object_auc'] == pytest.approx(1.0)
    assert object_cue['part_auc'] == pytest.approx(0.5)
    part_cue = probe_object_and_part(acting.float(), object_mask, acting)
    assert part_cue['part_auc'] == pytest.approx(1.0)


def test_selection_score_counts_the_chosen_cluster_against_the_best_one():
    """Accuracy is over part-level samples; fallbacks are counted apart; chance is 1/#ties."""
    from training.pretrain.selection_probe import cluster_regions, region_iou, score_selection

    ious = torch.tensor([[0.1, 0.6, 0.2], [0.5, 0.1, 0.0], [0.3, 0.3, 0.1], [0.9, 0.0, 0.0]])
    best = torch.tensor([1, 2, 0, 1])
    accepted = torch.tensor([True, True, True, False])
    result = score_selection(ious, best, accepted, torch.full((4, 3), 0.7))
    assert result['selection_accuracy'] == pytest.approx(2 / 3)
    assert result['fallback_fraction'] == pytest.approx(0.25)
    assert result['selection_chance'] == pytest.approx((1 / 3 + 1 / 3 + 2 / 3) / 3)
    maps = torch.tensor([[[0.0, 1.0, 1.0, 0.0]]])
    regions = cluster_regions(maps)
    assert regions.tolist() == [[[False, True, True, False]]]
    assert region_iou(regions, torch.tensor([[False, True, False, False]])).item() == 0.5


def test_selection_probe_runs_part_discovery_on_rendered_training_samples(monkeypatch):
    """One sample per pair through the real part discovery; shares and sizes are in range."""
    from training.pretrain.selection_probe import probe_selection

    monkeypatch.chdir(REPO)
    result = probe_selection(load_model_config('config/model_tiny.yaml'), per_pair=1)
    assert result['selection_samples'] == len(scenes.PAIRS)
    assert 0.0 <= result['fallback_fraction'] <= 1.0
    assert sum(result['pscore_histogram']) == len(scenes.PAIRS)
    assert 0 < result['acting_part_patches'] < result['object_patches'] < 196
    assert 0.0 <= result['selected_region_on_object'] <= 1.0
