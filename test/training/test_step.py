"""The SelectiveCL training step: loss components, gradient routing, ablation switches."""

import copy
import dataclasses

import pytest
import torch
from training.config import TrainConfig
from training.losses import build_param_groups
from training.model import SelectiveCLModel
from training.step import SelectiveCLObjective, TrainBatch

BATCH, NUM_EXO = 3, 3


@pytest.fixture()
def model(tiny_grounder):
    """Return a fresh training model around a copy of the shared tiny grounder."""
    torch.manual_seed(0)
    person = torch.randn(tiny_grounder.item_text.shape)
    return SelectiveCLModel(copy.deepcopy(tiny_grounder), person).train()


@pytest.fixture()
def batch():
    """Random images; labels repeat so every anchor has same-class columns."""
    generator = torch.Generator().manual_seed(3)
    return TrainBatch(ego=torch.randn(BATCH, 3, 224, 224, generator=generator),
                      exo=torch.randn(BATCH, NUM_EXO, 3, 224, 224, generator=generator),
                      labels=torch.tensor([11, 11, 6]))


def run_step(model, batch, epoch=0, **overrides):
    config = dataclasses.replace(TrainConfig(kmeans_iters=10), **overrides)
    result = SelectiveCLObjective(config)(model, batch, epoch,
                                          torch.Generator().manual_seed(0))
    result.loss.backward()
    return result


def grads_of(module):
    return [p.grad for p in module.parameters()]


def test_step_full_loss_is_sum_of_finite_components(model, batch):
    result = run_step(model, batch)
    parts = result.components
    assert set(parts) == {'ce_ego', 'ce_exo', 'proto', 'pix', 'total', 'part_fraction'}
    expected = parts['ce_ego'] + parts['ce_exo'] + parts['proto'] + parts['pix']
    assert torch.isfinite(result.loss)
    assert torch.allclose(result.loss.detach(), expected, atol=1e-5)
    # With C = 36 random-init classes the CE is near ln(36).
    assert abs(float(parts['ce_ego']) - torch.log(torch.tensor(36.0))) < 0.5


def test_step_gradients_reach_every_trainable_module_and_no_backbone(model, batch):
    run_step(model, batch, epoch=1)
    for name, module in model.trainable_modules().items():
        weights = [p for n, p in module.named_parameters() if n.endswith('weight')]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights), name
    backbones = list(model.grounder.clip.parameters()) + list(model.grounder.dino.parameters())
    assert all(p.grad is None for p in backbones)


def test_step_ce_only_trains_no_contrastive_projection(model, batch):
    result = run_step(model, batch, use_proto_loss=False, use_pixel_loss=False)
    assert set(result.components) == {'ce_ego', 'ce_exo', 'total'}
    assert all(g is None for g in grads_of(model.K_contrast_projection))
    assert all(g is None for g in grads_of(model.pixel_contrast_projection))
    assert model.grounder.head.aff_classifier.weight.grad is not None


def test_step_without_pixel_loss_leaves_pixel_projection_untouched(model, batch):
    result = run_step(model, batch, use_pixel_loss=False)
    assert 'pix' not in result.components and 'proto' in result.components
    assert all(g is None for g in grads_of(model.pixel_contrast_projection))


def test_step_object_level_ablation_never_uses_part_prototypes(model, batch):
    result = run_step(model, batch, part_prototypes=False)
    assert float(result.components['part_fraction']) == 0.0


def test_step_exo_ce_is_mean_over_views(model, batch):
    objective = SelectiveCLObjective(TrainConfig())
    cam_ego = torch.randn(BATCH, 36, 14, 14)
    cam_exo = torch.randn(BATCH * NUM_EXO, 36, 14, 14)
    losses = objective.classification_losses(cam_ego, cam_exo, batch.labels, NUM_EXO)
    logits = cam_exo.mean(dim=(2, 3)).view(BATCH, NUM_EXO, 36)
    per_view = [torch.nn.functional.cross_entropy(logits[:, n], batch.labels)
                for n in range(NUM_EXO)]
    assert torch.allclose(losses['ce_exo'], sum(per_view) / 3, atol=1e-6)


def test_step_optimiser_groups_cover_all_trainable_parameters(model):
    groups = build_param_groups(model.trainable_modules(), 1e-3)
    grouped = {id(p) for group in groups for p in group['params']}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert grouped == trainable
