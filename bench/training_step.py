"""Training-step time: our batched SelectiveCL step against the reference loop structure.

    .venv/bin/python -m bench.training_step [--arch full|tiny] [--batch 8] [--repeats 3]

The reference structure (written from docs/method.md, "Training step", not from the reference code)
computes the same losses but the way the released code is organised: conv stacks applied
twice, the exo 3x3 local mean as a 196-slice Python loop, part discovery one sample at a
time with a k-means that checks its tolerance on the host every iteration (up to 300
iterations), and the pixel loss one sample at a time. Both run in the same process on the
same batch. The backbone pass and the rest of the step (heads, part discovery, losses,
backward) are timed separately, the rest on cached features; the whole step is their sum.
"""

import argparse
import contextlib
import dataclasses
from typing import List, Optional
from unittest import mock

from affordance_grounding.config import load_model_config, ModelConfig
from affordance_grounding.model.calibration import cosine_affinity
from affordance_grounding.model.factory import build_grounder_with_tables
from affordance_grounding.model.saliency import compute_saliency
from bench.machine import describe_machine
from bench.reference_structure import (
    looped_local_mean, reference_clip_tokens, reference_dino_keys)
from bench.timing import median_seconds, write_report
import torch
from training import parts as parts_module
from training.config import TrainConfig
from training.losses import build_prototype_weights, compute_foreground_mask
from training.model import SelectiveCLModel
from training.parts import discover_parts, PartInputs
from training.step import SelectiveCLObjective, TrainBatch


def synced_kmeans(points, mask, init_centroids, num_iters, tolerance=1e-4, max_iters=300):
    """k-means with the reference library's host-side tolerance check every iteration."""
    centroids = init_centroids
    for _ in range(max_iters):
        new_centroids, _ = parts_module.batched_kmeans_original(points, mask, centroids, 1, 0)
        shift = ((new_centroids - centroids) ** 2).sum().item()  # host sync, as the library
        centroids = new_centroids
        if shift <= tolerance:
            break
    assignments = parts_module.assign_to_centroids(points, centroids).masked_fill(~mask, -1)
    return centroids, assignments


def reference_affinities(features, item_text, person_text, num_exo, grid):
    """Ego and exo CLIP maps with the 196-slice local mean."""
    batch = item_text.shape[0]
    s_ego = cosine_affinity(features.clip_ego, item_text[:, None]).view(batch, grid, grid)
    exo_item = item_text.repeat_interleave(num_exo, dim=0)[:, None]
    exo_person = person_text.repeat_interleave(num_exo, dim=0)[:, None]
    q_exo = cosine_affinity(features.clip_exo, exo_item).view(-1, grid, grid)
    o_exo = cosine_affinity(features.clip_exo, exo_person).view(-1, grid, grid)
    return s_ego, looped_local_mean(o_exo) * q_exo, q_exo


def reference_step(model, objective, batch, epoch, generator):
    """Compute the same loss, organised as the reference code is."""
    num_exo, labels = batch.exo.shape[1], batch.labels
    features = model.compute_frozen_features(batch.ego, batch.exo.flatten(0, 1))
    heads = model.forward_heads(features)  # classification branch
    heads_again = model.forward_heads(features)  # contrastive branch: stacks applied twice
    losses = objective.classification_losses(heads.cam_ego, heads.cam_exo, labels, num_exo)
    grid = model.grounder.grid
    s_ego, s_exo, q_exo = reference_affinities(
        features, model.grounder.item_text[labels], model.person_text[labels], num_exo, grid)
    rows = torch.arange(len(labels))
    cam_ego = heads.cam_ego[rows, labels]
    exo_labels = labels.repeat_interleave(num_exo)
    cam_exo = heads.cam_exo[torch.arange(len(exo_labels)), exo_labels]
    saliency = compute_saliency(features.cls_attention_ego)
    per_sample = []
    for b in range(len(labels)):  # part discovery one sample at a time
        exo = slice(b * num_exo, (b + 1) * num_exo)
        per_sample.append(discover_parts(PartInputs(
            keys_ego=features.keys_ego[b:b + 1], keys_exo=features.keys_exo[exo],
            s_ego=s_ego[b:b + 1], s_exo=s_exo[exo], cam_exo=cam_exo[exo].detach(),
            saliency=saliency[b:b + 1], epoch=epoch), objective.part_settings, generator))
    found = parts_module.PartMaps(*[torch.cat([getattr(p, field.name) for p in per_sample])
                                    for field in dataclasses.fields(parts_module.PartMaps)])
    weights = build_prototype_weights(found, cam_ego, cam_exo, s_ego, epoch)
    losses['proto'] = objective.proto_loss(heads_again.embed_ego, heads_again.embed_exo,
                                           weights, labels)
    foreground = compute_foreground_mask(s_ego, objective.config.gamma_ego)
    pixel = [objective.pixel_loss.sample_losses(
        heads_again.embed_pixel[b:b + 1], s_ego[b:b + 1],
        q_exo[b * num_exo:(b + 1) * num_exo], foreground[b:b + 1]) for b in range(len(labels))]
    losses['pix'] = torch.cat(pixel).sum() / len(labels)
    return sum(losses.values())


def build_model(arch: str) -> SelectiveCLModel:
    """Training model with random weights: the full-size or the tiny architecture."""
    torch.manual_seed(0)
    if arch == 'full':
        config = ModelConfig(clip_weights=None, dino_weights=None)
    else:
        config = load_model_config('config/model_tiny.yaml')
    grounder, tables = build_grounder_with_tables(config)
    return SelectiveCLModel(grounder, tables['person']).train()


def reference_backbones(model, ego, exo):
    """Backbone pass of the reference structure (ordinary last blocks also computed)."""
    with torch.no_grad():
        images = torch.cat([ego, exo])
        clip_model_visual = model.grounder.clip.visual
        reference_clip_tokens(clip_model_visual, model.grounder.to_clip_input(images))
        reference_dino_keys(model.grounder.dino.vit, exo)
        reference_dino_keys(model.grounder.dino.vit, ego)


def run(arch: str, batch_size: int, repeats: int, epoch: int) -> dict:
    """Time the backbone pass and the rest of the step separately, ours and reference."""
    model = build_model(arch)
    objective = SelectiveCLObjective(TrainConfig())
    generator = torch.Generator().manual_seed(0)
    data = torch.Generator().manual_seed(1)
    batch = TrainBatch(ego=torch.randn(batch_size, 3, 224, 224, generator=data),
                       exo=torch.randn(batch_size, 3, 3, 224, 224, generator=data),
                       labels=torch.arange(batch_size) % 4 + 5)
    exo_flat = batch.exo.flatten(0, 1)
    features = model.compute_frozen_features(batch.ego, exo_flat)

    def ours():
        objective(model, batch, epoch, generator).loss.backward()

    def reference():
        reference_step(model, objective, batch, epoch, generator).backward()

    def our_backbones():
        model.compute_frozen_features(batch.ego, exo_flat)

    rows = {'ours_backbones_s': median_seconds(our_backbones, repeats),
            'reference_backbones_s': median_seconds(
                lambda: reference_backbones(model, batch.ego, exo_flat), repeats)}
    with mock.patch.object(model, 'compute_frozen_features', return_value=features):
        rows['ours_non_backbone_s'] = median_seconds(ours, repeats)
        with _reference_kmeans():
            rows['reference_non_backbone_s'] = median_seconds(reference, repeats)
    rows['ours_step_s'] = rows['ours_backbones_s'] + rows['ours_non_backbone_s']
    rows['reference_step_s'] = rows['reference_backbones_s'] + rows['reference_non_backbone_s']
    return {'machine': describe_machine(), 'arch': arch, 'batch': batch_size, 'epoch': epoch,
            'seconds': {key: round(value, 4) for key, value in rows.items()},
            'speedup_whole_step': round(rows['reference_step_s'] / rows['ours_step_s'], 2),
            'speedup_non_backbone': round(rows['reference_non_backbone_s']
                                          / rows['ours_non_backbone_s'], 2)}


@contextlib.contextmanager
def _reference_kmeans():
    """Swap the batched fixed-iteration k-means for the host-synchronised one."""
    parts_module.batched_kmeans_original = parts_module.batched_kmeans
    with mock.patch.object(parts_module, 'batched_kmeans', synced_kmeans):
        yield


def main(argv: Optional[List[str]] = None) -> int:
    """Run, print the table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', choices=('full', 'tiny'), default='full')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--epoch', type=int, default=1, help='1 = CAM-gated (later epochs)')
    parser.add_argument('--out', default='outputs/bench/training_step.json')
    args = parser.parse_args(argv)
    report = run(args.arch, args.batch, args.repeats, args.epoch)
    seconds = report['seconds']
    machine = report['machine']
    print(f'{machine["cpu"]} ({machine["cores"]} cores), arch {args.arch}, batch '
          f'{args.batch}, epoch {args.epoch}')
    header = ('', 'whole step s', 'non-backbone s')
    print(f'{header[0]:24s} {header[1]:>13s} {header[2]:>15s}')
    print(f"{'ours (batched)':24s} {seconds['ours_step_s']:13.3f} "
          f"{seconds['ours_non_backbone_s']:15.3f}")
    print(f"{'reference structure':24s} {seconds['reference_step_s']:13.3f} "
          f"{seconds['reference_non_backbone_s']:15.3f}")
    print(f"speed-up: whole step {report['speedup_whole_step']}x, non-backbone "
          f"{report['speedup_non_backbone']}x (backbones: ours {seconds['ours_backbones_s']:.3f}"
          f" s, reference {seconds['reference_backbones_s']:.3f} s)")
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
