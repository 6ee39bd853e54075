"""Importing a released SelectiveCL state dict (its key layout), synthesised."""

import dataclasses

from affordance_grounding import import_official
from affordance_grounding.model.checkpoint import (
    CheckpointError, import_official_state_dict, load_grounder)
import open_clip
import pytest
import timm
import torch

WIDTH, HIDDEN, CLASSES = 48, 192, 36  # tiny DINO width, 4x hidden, Seen labels
HEAD_PREFIXES = ('aff_proj.', 'aff_ego_proj.', 'aff_classifier.')
TRAINING_PREFIXES = ('aff_exo_proj.', 'K_contrast_projection.', 'pixel_contrast_projection.')
CLIP_MODEL = 'ViT-B-16-quickgelu'
TINY_CLIP_OVERRIDES = {  # config/model_tiny.yaml, written out
    'embed_dim': 64,
    'vision_cfg': {'image_size': 224, 'layers': 2, 'width': 64, 'patch_size': 16,
                   'head_width': 32},
    'text_cfg': {'context_length': 77, 'vocab_size': 49408, 'width': 64, 'heads': 2,
                 'layers': 1},
}


def _conv_stack_shapes(prefix):
    shapes = {}
    for conv, norm in (('0', '1'), ('3', '4')):
        shapes[f'{prefix}.{conv}.weight'] = (WIDTH, WIDTH, 3, 3)
        shapes[f'{prefix}.{conv}.bias'] = (WIDTH,)
        for name in ('weight', 'bias', 'running_mean', 'running_var'):
            shapes[f'{prefix}.{norm}.{name}'] = (WIDTH,)
        shapes[f'{prefix}.{norm}.num_batches_tracked'] = ()
    return shapes


def _official_head_and_training_shapes(classes):
    shapes = {
        'aff_proj.norm.weight': (WIDTH,), 'aff_proj.norm.bias': (WIDTH,),
        'aff_proj.fc1.weight': (HIDDEN, WIDTH), 'aff_proj.fc1.bias': (HIDDEN,),
        'aff_proj.fc2.weight': (WIDTH, HIDDEN), 'aff_proj.fc2.bias': (WIDTH,),
        'aff_classifier.weight': (classes, WIDTH, 1, 1), 'aff_classifier.bias': (classes,),
    }
    shapes.update(_conv_stack_shapes('aff_ego_proj'))
    shapes.update(_conv_stack_shapes('aff_exo_proj'))
    for name in ('K_contrast_projection', 'pixel_contrast_projection'):
        shapes[f'{name}.weight'] = (WIDTH, WIDTH, 1, 1)
        shapes[f'{name}.bias'] = (WIDTH,)
    return shapes


def _perturbed_state(module, generator):
    """Return a module's state dict with every float tensor moved by known noise."""
    state = {}
    for key, value in module.state_dict().items():
        noise = 0.05 * torch.randn(value.shape, generator=generator)
        state[key] = value + noise if value.is_floating_point() else value.clone()
    return state


def _synthetic_official_state_dict(classes=CLASSES, seed=31):
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in _official_head_and_training_shapes(classes).items():
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(4321)
        elif key.endswith('running_var'):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
    torch.manual_seed(seed)
    clip = open_clip.create_model(CLIP_MODEL, pretrained=None, **TINY_CLIP_OVERRIDES)
    for key, value in _perturbed_state(clip, generator).items():
        state['net.' + key] = value
    vit = timm.create_model('vit_small_patch16_224', pretrained=False, num_classes=0,
                            embed_dim=WIDTH, depth=2, num_heads=6)
    for key, value in _perturbed_state(vit, generator).items():
        state['vit_model.' + key] = value
    return state


def _reference_clip(state):
    """Return the open_clip model holding the net.* weights, built without the package."""
    clip = open_clip.create_model(CLIP_MODEL, pretrained=None, **TINY_CLIP_OVERRIDES).eval()
    clip.load_state_dict({k[len('net.'):]: v for k, v in state.items() if k.startswith('net.')})
    return clip


@pytest.fixture(scope='module')
def official_state(tiny_config):
    """Return a synthetic 36-class official state dict for the tiny architecture."""
    assert tiny_config.clip_overrides == TINY_CLIP_OVERRIDES
    return _synthetic_official_state_dict()


@pytest.fixture(scope='module')
def imported(official_state, tiny_config):
    """Return (grounder, person_text, training_state) imported from the synthetic dict."""
    return import_official_state_dict(official_state, tiny_config)


def test_import_official_head_weights_land_unchanged(official_state, imported):
    grounder, _, _ = imported
    head_state = grounder.head.state_dict()
    official_head = {k: v for k, v in official_state.items() if k.startswith(HEAD_PREFIXES)}
    assert set(head_state) == set(official_head)
    for key, value in official_head.items():
        assert torch.equal(head_state[key], value), key
    assert head_state['aff_ego_proj.1.num_batches_tracked'].item() == 4321


def test_import_official_training_keys_are_returned(official_state, imported):
    _, _, training_state = imported
    expected = {k: v for k, v in official_state.items() if k.startswith(TRAINING_PREFIXES)}
    assert len(expected) == 14 + 4  # one conv/BN stack + two 1x1 projections
    assert set(training_state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(training_state[key], value), key


def test_import_official_backbones_come_from_checkpoint(official_state, imported):
    grounder, _, _ = imported
    for key, value in grounder.clip.visual.state_dict().items():
        assert torch.equal(value, official_state['net.visual.' + key]), key
    vit_state = grounder.dino.vit.state_dict()
    assert len(vit_state) == sum(k.startswith('vit_model.') for k in official_state)
    for key, value in vit_state.items():
        assert torch.equal(value, official_state['vit_model.' + key]), key


def test_import_official_prompt_tables_use_checkpoint_text_tower(official_state, imported):
    grounder, person_text, _ = imported
    clip = _reference_clip(official_state)
    tokenizer = open_clip.get_tokenizer(CLIP_MODEL)
    item_prompts = ['an item to beat with', 'an item to cut_with', 'an item to hold with',
                    'an item to write with']
    person_prompts = ['a person beat an item', 'a person cut_with an item',
                      'a person hold an item', 'a person write an item']
    rows = [0, 6, 11, 35]
    with torch.no_grad():
        item_expected = clip.encode_text(tokenizer(item_prompts))
        person_expected = clip.encode_text(tokenizer(person_prompts))
    assert grounder.item_text.shape == person_text.shape == (36, 64)
    torch.testing.assert_close(grounder.item_text[rows], item_expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(person_text[rows], person_expected, atol=1e-5, rtol=0)


def test_import_official_class_count_mismatch_raises(tiny_config):
    state = _synthetic_official_state_dict(classes=25, seed=32)
    with pytest.raises(CheckpointError) as info:
        import_official_state_dict(state, tiny_config)
    assert '25 classes' in str(info.value)
    assert '36' in str(info.value)


def test_import_official_accepts_matching_unseen_labels(official_state, tiny_config):
    state = dict(official_state)
    state['aff_classifier.weight'] = state['aff_classifier.weight'][:25].clone()
    state['aff_classifier.bias'] = state['aff_classifier.bias'][:25].clone()
    config = dataclasses.replace(tiny_config, labels='unseen')
    grounder, person_text, _ = import_official_state_dict(state, config,
                                                          embed_backbones=False)
    assert grounder.head.num_classes == 25
    assert person_text.shape == (25, 64)
    assert torch.equal(grounder.head.aff_classifier.bias, state['aff_classifier.bias'])


def test_import_official_rejects_dict_without_classifier(tiny_config):
    with pytest.raises(CheckpointError, match='aff_classifier.weight'):
        import_official_state_dict({'aff_proj.fc1.weight': torch.zeros(2, 2)}, tiny_config)


def test_import_official_cli_writes_loadable_bundle(official_state, imported, tmp_path,
                                                    tiny_config_path, tiny_images, capsys):
    checkpoint = tmp_path / 'best_seen.pth'
    torch.save(official_state, checkpoint)
    out = tmp_path / 'models' / 'seen.pt'
    code = import_official.main(['--checkpoint', str(checkpoint), '--out', str(out),
                                 '--config', str(tiny_config_path)])
    assert code == 0
    assert '36 labels' in capsys.readouterr().out
    loaded = load_grounder(str(out))
    grounder, _, _ = imported
    for key, value in loaded.head.state_dict().items():
        assert torch.equal(value, official_state[key]), key
    torch.testing.assert_close(loaded.item_text, grounder.item_text, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tiny_images[:1]).calibrated,
                                   grounder(tiny_images[:1]).calibrated, atol=0, rtol=0)


def test_import_official_cli_wrong_label_set_returns_2(official_state, tmp_path,
                                                       tiny_config_path, capsys):
    checkpoint = tmp_path / 'best_seen.pth'
    torch.save(official_state, checkpoint)
    out = tmp_path / 'unseen.pt'
    code = import_official.main(['--checkpoint', str(checkpoint), '--out', str(out),
                                 '--config', str(tiny_config_path), '--labels', 'unseen'])
    assert code == 2
    assert '36 classes' in capsys.readouterr().err
    assert not out.exists()


def test_import_official_logs_what_it_loads_without_the_random_notice(official_state,
                                                                      tiny_config, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        import_official_state_dict(official_state, tiny_config)
    messages = [record.getMessage() for record in caplog.records]
    assert not any('No pretrained weights loaded' in message for message in messages)
    assert [m for m in messages if m.startswith(('CLIP', 'DINO'))] == [
        'CLIP ViT-B-16-quickgelu: weights from the official checkpoint',
        'CLIP ViT-B-16-quickgelu: weights from the official checkpoint',
        'DINO vit_small_patch16_224: weights from the official checkpoint']
