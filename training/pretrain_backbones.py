r"""Pretrain the small CLIP and DINO backbones of the synthetic world on the CPU.

``python -m training.pretrain_backbones --config config/model_synthetic.yaml``

Renders a pool of synthetic scenes (its own seed, disjoint from benchmark data sets), trains
the open_clip model (dense ClearCLIP patch-text + caption contrastive terms,
:mod:`training.pretrain.clip_pretrain`) and the timm ViT (DINO-style self-distillation with a
patch term on the last-block keys, :mod:`training.pretrain.dino_pretrain`), and writes them to
the files the model config names, in the formats ``open_clip.create_model(pretrained=FILE)``
and ``timm.create_model(pretrained_cfg_overlay={'file': FILE})`` read. The CLIP file is
stored in float16 (it is mostly the 49408-token embedding table); loading casts it back.
"""

import argparse
import dataclasses
import json
import logging
from pathlib import Path
import sys
import time
from typing import List, Optional

from affordance_grounding.config import load_model_config
from affordance_grounding.model.checkpoint import write_atomically
import torch
from training.pretrain.clip_pretrain import ClipPretrainSettings, pretrain_clip
from training.pretrain.dino_pretrain import (
    DinoPretrainSettings, OBJECTNESS_TARGETS, pretrain_dino)
from training.pretrain.scenes import render_pool
from training.run_files import write_json

POOL_SEED = 1000  # root seed of the pretraining scenes; benchmark data sets use 0..99


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='config/model_synthetic.yaml',
                        help='model config naming the architectures and output files')
    parser.add_argument('--scenes', type=int, default=2000, help='pretraining scenes rendered')
    parser.add_argument('--clip-steps', type=int, default=ClipPretrainSettings.steps)
    parser.add_argument('--dino-steps', type=int, default=DinoPretrainSettings.steps)
    parser.add_argument('--clip-batch-size', type=int, default=ClipPretrainSettings.batch_size)
    parser.add_argument('--dino-batch-size', type=int, default=DinoPretrainSettings.batch_size)
    parser.add_argument('--objectness-weight', type=float,
                        default=DinoPretrainSettings.objectness_weight,
                        help='weight of the supervised DINO objectness term (0 = off)')
    parser.add_argument('--dino-lr', type=float, default=DinoPretrainSettings.lr)
    parser.add_argument('--patch-weight', type=float, default=DinoPretrainSettings.patch_weight,
                        help='weight of the self-supervised DINO patch term')
    parser.add_argument('--local-crop', type=int, default=DinoPretrainSettings.local_crop,
                        help='side of the two DINO local crops (0 = global crops only)')
    parser.add_argument('--teacher-momentum', type=float,
                        default=DinoPretrainSettings.teacher_momentum,
                        help='initial EMA momentum of the DINO teacher (cosine-increased to 1)')
    parser.add_argument('--objectness-query-only', action='store_true',
                        help='stop the objectness gradient into the last-block keys')
    parser.add_argument('--objectness-target',
                        choices=OBJECTNESS_TARGETS,
                        default=DinoPretrainSettings.objectness_target,
                        help='what the DINO objectness term asks of the class attention')
    parser.add_argument('--objectness-key-projection-only', action='store_true',
                        help='the objectness term trains the last key projection, not its input')
    parser.add_argument('--mask-ratio', type=float, default=DinoPretrainSettings.mask_ratio,
                        help='largest share of masked student tokens (iBOT-style; 0 = off)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--only', choices=('clip', 'dino'), help='train one backbone only')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0 = default)')
    return parser


def save_clip(model: torch.nn.Module, path: Path) -> None:
    """Write the open_clip state dict (float16 floats) where ``pretrained=FILE`` reads it."""
    state = {key: value.half() if value.is_floating_point() else value
             for key, value in model.state_dict().items()}
    write_atomically(state, path)


def save_dino(vit: torch.nn.Module, path: Path) -> None:
    """Write the timm ViT state dict (float32) where ``pretrained_cfg_overlay`` reads it."""
    write_atomically({key: value.float() for key, value in vit.state_dict().items()}, path)


def main(argv: Optional[List[str]] = None) -> int:
    """Render the pool, train the requested backbones, save them; returns an exit code."""
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_model_config(args.config)
    random_config = dataclasses.replace(config, clip_weights=None, dino_weights=None)
    started = time.perf_counter()
    pool = render_pool(args.scenes, POOL_SEED + args.seed)
    report = {'scenes': args.scenes, 'render_s': round(time.perf_counter() - started, 1)}
    if args.only in (None, 'clip'):
        settings = ClipPretrainSettings(steps=args.clip_steps, batch_size=args.clip_batch_size,
                                        seed=args.seed)
        clip_started = time.perf_counter()
        model, history = pretrain_clip(pool, random_config, settings)
        save_clip(model, Path(config.clip_weights))
        report['clip'] = {'settings': dataclasses.asdict(settings), 'history': history,
                          'train_s': round(time.perf_counter() - clip_started, 1)}
    if args.only in (None, 'dino'):
        settings = DinoPretrainSettings(steps=args.dino_steps, batch_size=args.dino_batch_size,
                                        objectness_weight=args.objectness_weight,
                                        lr=args.dino_lr, patch_weight=args.patch_weight,
                                        local_crop=args.local_crop,
                                        teacher_momentum=args.teacher_momentum,
                                        objectness_query_only=args.objectness_query_only,
                                        objectness_target=args.objectness_target,
                                        mask_ratio=args.mask_ratio,
                                        objectness_key_projection_only=(
                                            args.objectness_key_projection_only),
                                        seed=args.seed)
        dino_started = time.perf_counter()
        vit, history = pretrain_dino(pool, random_config, settings)
        save_dino(vit, Path(config.dino_weights))
        report['dino'] = {'settings': dataclasses.asdict(settings), 'history': history,
                          'train_s': round(time.perf_counter() - dino_started, 1)}
    report['total_s'] = round(time.perf_counter() - started, 1)
    suffix = f'_{args.only}' if args.only else ''
    written = config.dino_weights if args.only == 'dino' else config.clip_weights
    report_path = Path(written).parent / f'pretrain_report{suffix}.json'
    write_json(report_path, report, indent=1)
    print(json.dumps({key: report[key] for key in ('scenes', 'render_s', 'total_s')}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
