"""AffordanceGrounder: shapes, per-class and batch consistency, feature/head split, freezing."""

import copy
import dataclasses

from affordance_grounding.model.calibration import upsample_and_normalize
from affordance_grounding.model.grounding import AffordanceGrounder
import pytest
import torch
import torch.nn.functional as F

MAP_NAMES = ('cam', 'affinity', 'calibrated', 'calibrated_local_mean')
PRE_BATCHNORM_BIASES = ('aff_ego_proj.0.bias', 'aff_ego_proj.3.bias')


def _run(grounder, images, class_index=None):
    with torch.no_grad():
        return grounder(images, class_index)


@pytest.fixture(scope='module')
def all_class_maps(tiny_grounder, tiny_images):
    """Return all-class maps of the three shared test images."""
    return _run(tiny_grounder, tiny_images)


def test_grounder_has_tiny_architecture(tiny_grounder):
    assert tiny_grounder.grid == 14
    assert tiny_grounder.item_text.shape == (36, 64)
    assert tiny_grounder.labels[11] == 'hold'
    assert tiny_grounder.head.num_classes == 36


@pytest.mark.parametrize('batch', [1, 3])
def test_grounder_all_class_maps_have_class_axis(tiny_grounder, tiny_images, batch):
    maps = _run(tiny_grounder, tiny_images[:batch])
    for name in MAP_NAMES:
        assert getattr(maps, name).shape == (batch, 36, 14, 14), name


@pytest.mark.parametrize('batch', [1, 3])
def test_grounder_per_class_maps_have_one_channel(tiny_grounder, tiny_images, batch):
    class_index = torch.tensor([11, 0, 35][:batch])
    maps = _run(tiny_grounder, tiny_images[:batch], class_index)
    for name in MAP_NAMES:
        assert getattr(maps, name).shape == (batch, 1, 14, 14), name


def test_grounder_per_class_equals_slice_of_all_classes(tiny_grounder, tiny_images,
                                                        all_class_maps):
    class_index = torch.tensor([11, 0, 35])
    maps = _run(tiny_grounder, tiny_images, class_index)
    for name in MAP_NAMES:
        full = getattr(all_class_maps, name)
        expected = torch.stack([full[n, class_index[n]] for n in range(3)])[:, None]
        torch.testing.assert_close(getattr(maps, name), expected, atol=1e-6, rtol=0)


def test_grounder_batch_equals_single_images(tiny_grounder, tiny_images, all_class_maps):
    for n in range(3):
        single = _run(tiny_grounder, tiny_images[n:n + 1])
        for name in MAP_NAMES:
            torch.testing.assert_close(getattr(single, name)[0],
                                       getattr(all_class_maps, name)[n], atol=1e-5, rtol=0)


def test_grounder_forward_is_features_then_head(tiny_grounder, tiny_images, all_class_maps):
    with torch.no_grad():
        features = tiny_grounder.forward_features(tiny_images)
        maps = tiny_grounder.forward_head(features)
    assert features.clip_tokens.shape == (3, 196, 64)
    assert features.dino_keys.shape == (3, 196, 48)
    for name in MAP_NAMES:
        torch.testing.assert_close(getattr(maps, name), getattr(all_class_maps, name),
                                   atol=0, rtol=0)


def test_grounder_maps_follow_calibration_formulas(tiny_grounder, tiny_images,
                                                   all_class_maps):
    with torch.no_grad():
        features = tiny_grounder.forward_features(tiny_images)
        cam = tiny_grounder.head(features.dino_keys, 14)
    patches = F.normalize(features.clip_tokens, dim=-1)  # (N, P, E)
    texts = F.normalize(tiny_grounder.item_text, dim=-1)  # (C, E)
    cosine = torch.einsum('npe,ce->ncp', patches, texts).reshape(3, 36, 14, 14)
    low = cosine.amin(dim=(2, 3), keepdim=True)
    high = cosine.amax(dim=(2, 3), keepdim=True)
    affinity = (cosine - low) / (high - low)
    torch.testing.assert_close(all_class_maps.cam, cam, atol=1e-6, rtol=0)
    torch.testing.assert_close(all_class_maps.affinity, affinity, atol=1e-5, rtol=0)
    torch.testing.assert_close(all_class_maps.calibrated, affinity * cam, atol=1e-5, rtol=0)


def test_grounder_heatmaps_upsample_selected_map(tiny_grounder, all_class_maps):
    heat = tiny_grounder.heatmaps(all_class_maps, 'clip_local_mean')
    expected = upsample_and_normalize(all_class_maps.calibrated_local_mean, 224)
    assert heat.shape == (3, 36, 224, 224)
    torch.testing.assert_close(heat, expected, atol=0, rtol=0)
    assert tiny_grounder.heatmaps(all_class_maps, size=32).shape == (3, 36, 32, 32)


def test_grounder_to_clip_input_renormalises_when_statistics_differ(tiny_grounder,
                                                                    tiny_config):
    openai_mean = (0.48145466, 0.4578275, 0.40821073)
    openai_std = (0.26862954, 0.26130258, 0.27577711)
    config = dataclasses.replace(tiny_config, clip_mean=openai_mean, clip_std=openai_std)
    grounder = AffordanceGrounder(config, tiny_grounder.clip, tiny_grounder.dino,
                                  tiny_grounder.head, tiny_grounder.item_text)
    pixels = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    dino_input = torch.stack([(pixels[:, c] - config.dino_mean[c]) / config.dino_std[c]
                              for c in range(3)], dim=1)
    clip_input = torch.stack([(pixels[:, c] - openai_mean[c]) / openai_std[c]
                              for c in range(3)], dim=1)
    torch.testing.assert_close(grounder.to_clip_input(dino_input), clip_input,
                               atol=1e-5, rtol=0)
    assert tiny_grounder.to_clip_input(dino_input) is dino_input


def test_grounder_rejects_wrong_prompt_table(tiny_grounder, tiny_config):
    with pytest.raises(ValueError, match=r'\(36, 64\)'):
        AffordanceGrounder(tiny_config, tiny_grounder.clip, tiny_grounder.dino,
                           tiny_grounder.head, torch.zeros(25, 64))


def test_grounder_backbones_do_not_require_grad(tiny_grounder):
    backbone_parameters = list(tiny_grounder.clip.parameters())
    backbone_parameters += list(tiny_grounder.dino.parameters())
    assert len(backbone_parameters) > 0
    assert all(not p.requires_grad for p in backbone_parameters)
    assert all(p.requires_grad for p in tiny_grounder.head.parameters())


def _backward_cam_sum(grounder, images):
    grounder.zero_grad(set_to_none=True)
    grounder(images).cam.sum().backward()
    return dict(grounder.head.named_parameters())


def test_grounder_train_mode_backward_reaches_head_only(tiny_grounder, tiny_images):
    grounder = copy.deepcopy(tiny_grounder).train()
    assert grounder.head.training
    assert not grounder.clip.training and not grounder.dino.training
    head = _backward_cam_sum(grounder, tiny_images[:2])
    assert all(p.grad is None for p in grounder.clip.parameters())
    assert all(p.grad is None for p in grounder.dino.parameters())
    for name, parameter in head.items():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        if name not in PRE_BATCHNORM_BIASES:
            assert parameter.grad.abs().max() > 1e-3, name
    # d(sum of cam)/d(classifier bias) counts the summed pixels: 2 images x 14 x 14.
    torch.testing.assert_close(head['aff_classifier.bias'].grad, torch.full((36,), 392.0),
                               atol=1e-3, rtol=0)
    # Training-mode BatchNorm cancels a per-channel shift, so the conv biases before it get
    # (numerically) no gradient: a property of the architecture, not of the freezing.
    for name in PRE_BATCHNORM_BIASES:
        weight_grad = head[name.replace('bias', 'weight')].grad.abs().max()
        assert head[name].grad.abs().max() < 1e-3 * weight_grad, name


def test_grounder_eval_mode_backward_reaches_every_head_parameter(tiny_grounder, tiny_images):
    grounder = copy.deepcopy(tiny_grounder).eval()
    head = _backward_cam_sum(grounder, tiny_images[:2])
    assert all(p.grad is None for p in grounder.clip.parameters())
    assert all(p.grad is None for p in grounder.dino.parameters())
    for name, parameter in head.items():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().max() > 1e-3, name
