"""Tests for training.losses against explicit loops written from docs/method.md, "Losses"."""

import math

from affordance_grounding.model.head import AffordanceHead, build_conv_stack
import pytest
import torch
from torch import nn

from training import losses
from training.config import TrainConfig
from training.parts import PartMaps

TAU = 0.5
TAU_B = 0.07


def _unit(vector: torch.Tensor) -> torch.Tensor:
    """L2-normalise a float64 vector with eps 1e-12."""
    return vector / max(float(vector.norm()), 1e-12)


def _pool(embedding: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean over the grid of (D, G, G) features times a (G, G) weight, then normalised."""
    return _unit((embedding.double() * weight.double()[None]).mean(dim=(1, 2)))


def _proto_losses_loop(embed_ego, embed_exo, weights, labels):
    """Per-anchor L_proto straight from the set definitions of docs/method.md, "Losses"."""
    batch = len(labels)
    num_exo = embed_exo.shape[0] // batch
    labels = labels.tolist()
    columns = []  # (vector, label, block 1..4, index within the block)
    for j in range(batch):
        columns.append((_pool(embed_ego[j], weights.positive_ego[j]), labels[j], 1, j))
    for j in range(batch):
        columns.append((_pool(embed_ego[j], weights.negative_ego[j]), labels[j], 2, j))
    for f in range(batch * num_exo):
        columns.append((_pool(embed_exo[f], weights.positive_exo[f]), labels[f // num_exo], 3, f))
    for f in range(batch * num_exo):
        columns.append((_pool(embed_exo[f], weights.negative_exo[f]), labels[f // num_exo], 4, f))
    result = []
    for b in range(batch):
        anchor = _pool(embed_ego[b], weights.anchor[b])
        positives, denominator = [], []
        for vector, label, block, index in columns:
            logit = float(anchor @ vector) / TAU
            if (block == 1 and index != b and label == labels[b]) or (
                    block == 3 and label == labels[b]):
                positives.append(logit)
            if (block == 1 and index != b) or (block == 2 and label == labels[b]) or (
                    block == 3) or (block == 4 and label == labels[b]):
                denominator.append(logit)
        log_denominator = math.log(sum(math.exp(logit) for logit in denominator))
        mean = sum(logit - log_denominator for logit in positives) / len(positives)
        result.append(-(TAU / TAU_B) * mean)
    return result


def _random_weights(generator, batch, num_exo, grid):
    """Random prototype weights, negatives partly below zero (docs/method.md, "Training step")."""
    def draw(count):
        return torch.rand(count, grid, grid, generator=generator)
    return losses.PrototypeWeights(
        anchor=draw(batch) - 0.2, positive_ego=draw(batch), negative_ego=1.2 - 2 * draw(batch),
        positive_exo=draw(batch * num_exo), negative_exo=1.2 - 2 * draw(batch * num_exo))


def _proto_case(seed=0, batch=4, num_exo=3, grid=3, dim=8):
    """Random embeddings, weights and repeated labels."""
    generator = torch.Generator().manual_seed(seed)
    embed_ego = torch.randn(batch, dim, grid, grid, generator=generator)
    embed_exo = torch.randn(batch * num_exo, dim, grid, grid, generator=generator)
    labels = torch.tensor([0, 1, 0, 2])
    return embed_ego, embed_exo, _random_weights(generator, batch, num_exo, grid), labels


def test_losses_scale_by_tau_over_base_tau_with_the_recipe_defaults():
    """Default modules use TrainConfig's tau and tau_b; the loss grows by tau / tau_b."""
    recipe = TrainConfig()
    embed_ego, embed_exo, weights, labels = _proto_case(seed=3)
    default = losses.PrototypeContrastiveLoss()(embed_ego, embed_exo, weights, labels)
    unscaled = losses.PrototypeContrastiveLoss(
        recipe.temperature, recipe.temperature)(embed_ego, embed_exo, weights, labels)
    scale = recipe.temperature / recipe.base_temperature
    assert float(default) == pytest.approx(scale * float(unscaled), rel=1e-5)
    assert float(unscaled) != pytest.approx(float(default), rel=1e-2)  # the scale matters


def test_prototype_contrastive_loss_matches_set_definition_loop():
    embed_ego, embed_exo, weights, labels = _proto_case()
    module = losses.PrototypeContrastiveLoss()
    per_anchor = module.anchor_losses(embed_ego, embed_exo, weights, labels)
    expected = _proto_losses_loop(embed_ego, embed_exo, weights, labels)
    torch.testing.assert_close(per_anchor.double(), torch.tensor(expected, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    total = module(embed_ego, embed_exo, weights, labels)
    assert abs(float(total) - sum(expected) / 4) < 1e-5


def test_prototype_contrastive_loss_excludes_own_ego_prototype():
    embed_ego, embed_exo, weights, labels = _proto_case(seed=1)
    module = losses.PrototypeContrastiveLoss()
    before = module.anchor_losses(embed_ego, embed_exo, weights, labels)
    changed = losses.PrototypeWeights(**vars(weights))
    changed.positive_ego = weights.positive_ego.clone()
    changed.positive_ego[0] = torch.rand(3, 3, generator=torch.Generator().manual_seed(5))
    after = module.anchor_losses(embed_ego, embed_exo, changed, labels)
    assert abs(float(after[0] - before[0])) < 1e-6  # column 0 is not in anchor 0's sets
    assert abs(float(after[2] - before[2])) > 1e-4  # anchor 2 (same label) uses column 0


def test_prototype_contrastive_loss_scales_with_base_temperature():
    embed_ego, embed_exo, weights, labels = _proto_case(seed=2)
    default = losses.PrototypeContrastiveLoss()(embed_ego, embed_exo, weights, labels)
    unscaled = losses.PrototypeContrastiveLoss(base_temperature=0.5)(
        embed_ego, embed_exo, weights, labels)
    assert abs(float(default) - float(unscaled) * 0.5 / 0.07) < 1e-5


def _pixel_loss_loop(embed_pixel, s_ego, q_exo, foreground):
    """L_pix with per-sample and per-pixel loops (docs/method.md); empty samples skipped."""
    batch, dim = embed_pixel.shape[:2]
    num_exo = q_exo.shape[0] // batch
    pixels = s_ego[0].numel()
    total = 0.0
    for b in range(batch):
        rho = min(float(q_exo[b * num_exo + n].max()) for n in range(num_exo))
        cosine = s_ego[b].flatten().tolist()
        fg = foreground[b].flatten().tolist()
        labels = [value > rho for value in cosine]
        if not any(labels):
            labels = list(fg)
        features = [_unit(embed_pixel[b].double().reshape(dim, pixels)[:, p])
                    for p in range(pixels)]
        terms = []
        for p in range(pixels):
            positives = [q for q in range(pixels) if q != p and labels[q] == labels[p]]
            if not positives or not fg[p]:
                continue
            logits = [float(features[p] @ features[q]) / TAU for q in range(pixels)]
            log_denominator = math.log(sum(math.exp(logits[q]) for q in range(pixels) if q != p))
            terms.append(sum(logits[q] - log_denominator for q in positives) / len(positives))
        if terms:
            total += -(TAU / TAU_B) * sum(terms) / len(terms)
    return total / batch


def _pixel_case(seed=0, batch=3, num_exo=2, grid=3, dim=6):
    """Sample 0 normal, sample 1 with no pixel above rho (G2 fallback), sample 2 normal."""
    generator = torch.Generator().manual_seed(seed)
    embed_pixel = torch.randn(batch, dim, grid, grid, generator=generator)
    s_ego = torch.rand(batch, grid, grid, generator=generator) * 0.4
    q_exo = torch.rand(batch * num_exo, grid, grid, generator=generator) * 0.3
    q_exo[2:4] += 0.5  # sample 1: rho >= 0.5 > every ego cosine
    return embed_pixel, s_ego, q_exo


def test_compute_foreground_mask_thresholds_minmax_and_guards_constant_maps():
    s_ego = torch.tensor([[[0.0, 0.1], [0.3, 0.4]], [[0.2, 0.2], [0.2, 0.2]]])
    mask = losses.compute_foreground_mask(s_ego, 0.6)
    assert mask[0].tolist() == [[False, False], [True, True]]  # minmax 0, .25, .75, 1
    assert not mask[1].any()


def test_pixel_contrastive_loss_matches_per_pixel_loop():
    embed_pixel, s_ego, q_exo = _pixel_case()
    foreground = losses.compute_foreground_mask(s_ego, 0.6)
    module = losses.PixelContrastiveLoss()
    labels = module.build_pixel_labels(s_ego, q_exo, foreground)
    assert torch.equal(labels[1], foreground[1].flatten())  # the G2 fallback was used
    loss = module(embed_pixel, s_ego, q_exo, foreground)
    expected = _pixel_loss_loop(embed_pixel, s_ego, q_exo, foreground)
    assert abs(float(loss) - expected) < 1e-5


def test_pixel_contrastive_loss_no_kept_anchor_is_finite_and_skipped():
    embed_pixel, s_ego, q_exo = _pixel_case(seed=1)
    s_ego[2] = torch.tensor([[0.0, 0.1, 0.2], [0.3, 0.9, 0.1], [0.2, 0.0, 0.3]])
    q_exo[4:6] = 0.1
    q_exo[4, 0, 0], q_exo[5, 1, 1] = 0.5, 0.6  # rho = 0.5: only ego pixel 4 passes
    foreground = losses.compute_foreground_mask(s_ego, 0.6)
    assert foreground[2].flatten().tolist() == [False] * 4 + [True] + [False] * 4
    module = losses.PixelContrastiveLoss()
    per_sample = module.sample_losses(embed_pixel, s_ego, q_exo, foreground)
    assert float(per_sample[2]) == 0.0
    assert torch.isfinite(per_sample).all()
    loss = module(embed_pixel, s_ego, q_exo, foreground)
    assert abs(float(loss) - _pixel_loss_loop(embed_pixel, s_ego, q_exo, foreground)) < 1e-5
    assert abs(float(loss) - float(per_sample[:2].sum()) / 3) < 1e-6


def _part_maps(batch=2, num_exo=2, grid=2):
    """Part maps where sample 0 found a part and sample 1 fell back."""
    generator = torch.Generator().manual_seed(3)
    return PartMaps(ego=torch.rand(batch, grid, grid, generator=generator),
                    exo=torch.rand(batch * num_exo, grid, grid, generator=generator),
                    is_part=torch.tensor([True, False]), centroid=torch.zeros(batch, 4),
                    pscores=torch.zeros(batch, 3), num_selected=torch.zeros(batch))


def test_build_prototype_weights_epoch_zero_and_later():
    maps = _part_maps()
    s_ego = torch.tensor([[[0.1, -0.2], [0.3, 0.4]], [[0.5, 0.6], [0.7, 0.8]]])
    cam_ego = torch.tensor([[[2.0, -1.0], [0.5, 3.0]], [[1.0, 1.0], [-2.0, 0.0]]],
                           requires_grad=True)
    cam_exo = torch.full((4, 2, 2), -1.0, requires_grad=True)
    first = losses.build_prototype_weights(maps, cam_ego, cam_exo, s_ego, epoch=0)
    assert torch.equal(first.anchor[0], s_ego[0])
    assert torch.equal(first.anchor[1], torch.ones(2, 2))
    assert torch.equal(first.negative_ego, 1 - maps.ego)
    assert torch.equal(first.positive_exo, maps.exo)
    later = losses.build_prototype_weights(maps, cam_ego, cam_exo, s_ego, epoch=1)
    torch.testing.assert_close(later.negative_ego, 1 - maps.ego * cam_ego.clamp(min=0),
                               atol=0, rtol=0)
    assert torch.equal(later.negative_exo, torch.ones(4, 2, 2))
    assert torch.equal(later.positive_ego, maps.ego)
    later.negative_ego.sum().backward()
    assert cam_ego.grad is not None and float(cam_ego.grad.abs().sum()) > 0


def _small_modules(width=8, num_classes=3):
    """Return the six trainable roles at a small width."""
    head = AffordanceHead(width, num_classes)
    return {'aff_proj': head.aff_proj, 'aff_ego_proj': head.aff_ego_proj,
            'aff_exo_proj': build_conv_stack(width), 'aff_classifier': head.aff_classifier,
            'K_contrast_projection': nn.Conv2d(width, width, kernel_size=1),
            'pixel_contrast_projection': nn.Conv2d(width, width, kernel_size=1)}


def _expected_multipliers():
    """Learning-rate multiplier of every parameter, written out from docs/method.md, "Losses"."""
    expected = {'aff_proj.norm.weight': 1.0, 'aff_proj.norm.bias': 2.0,
                'aff_proj.fc1.weight': 10.0, 'aff_proj.fc1.bias': 20.0,
                'aff_proj.fc2.weight': 10.0, 'aff_proj.fc2.bias': 20.0,
                'aff_classifier.weight': 1.0, 'aff_classifier.bias': 2.0,
                'K_contrast_projection.weight': 1.0, 'K_contrast_projection.bias': 2.0,
                'pixel_contrast_projection.weight': 1.0, 'pixel_contrast_projection.bias': 2.0}
    for stack in ('aff_ego_proj', 'aff_exo_proj'):
        for layer in ('0', '1', '3', '4'):  # conv, BN, conv, BN
            expected[f'{stack}.{layer}.weight'] = 1.0
            expected[f'{stack}.{layer}.bias'] = 2.0
    return expected


def test_build_param_groups_follow_the_table():
    modules = _small_modules()
    groups = losses.build_param_groups(modules, base_lr=1e-3)
    group_of = {}
    for index, group in enumerate(groups):
        assert group['weight_decay'] == 5e-4
        for parameter in group['params']:
            assert id(parameter) not in group_of, 'parameter listed twice'
            group_of[id(parameter)] = index
    expected = _expected_multipliers()
    named = {f'{role}.{name}': parameter for role, module in modules.items()
             for name, parameter in module.named_parameters()}
    assert set(named) == set(expected)
    assert len(group_of) == len(named)
    for name, parameter in named.items():
        lr = groups[group_of[id(parameter)]]['lr']
        assert lr == pytest.approx(1e-3 * expected[name], rel=1e-12), name
    torch.optim.SGD(groups, lr=1e-3, momentum=0.9, nesterov=True)


def test_build_param_groups_covers_the_training_model(tiny_config):
    from affordance_grounding.model.factory import build_grounder
    from training.model import SelectiveCLModel

    model = SelectiveCLModel(build_grounder(tiny_config), torch.zeros(3, 8))
    trainable = model.trainable_modules()
    groups = losses.build_param_groups(trainable, base_lr=1e-3)
    listed = [id(parameter) for group in groups for parameter in group['params']]
    head_parameters = {id(parameter) for module in trainable.values()
                       for parameter in module.parameters()}
    assert len(listed) == len(set(listed)) == len(head_parameters)
    assert set(listed) == head_parameters


def test_build_param_groups_rejects_unlisted_and_missing_modules():
    modules = _small_modules()
    modules['aff_proj'].extra = nn.Linear(2, 2)  # not in the table
    with pytest.raises(ValueError, match='aff_proj.extra.weight'):
        losses.build_param_groups(modules, base_lr=1e-3)
    modules = _small_modules()
    del modules['aff_exo_proj']
    with pytest.raises(ValueError, match='expected modules'):
        losses.build_param_groups(modules, base_lr=1e-3)


def test_build_param_groups_skips_frozen_parameters():
    modules = _small_modules()
    modules['aff_classifier'].requires_grad_(False)
    groups = losses.build_param_groups(modules, base_lr=1e-3)
    listed = {id(parameter) for group in groups for parameter in group['params']}
    assert id(modules['aff_classifier'].weight) not in listed
    assert id(modules['aff_proj'].fc1.weight) in listed
