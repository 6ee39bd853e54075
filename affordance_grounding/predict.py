r"""Predict where to act on one photo and write the heatmap overlay as a PNG.

Examples::

    python -m affordance_grounding.predict --checkpoint model.pt --image cup.jpg \\
        --action hold --out hold.png
    python -m affordance_grounding.predict --config config/model_tiny.yaml \\
        --sample coffee --action drink_with --out demo.png   # random weights, offline
"""

import argparse
import logging
from pathlib import Path
import sys
from typing import List, Optional

from affordance_grounding.config import CALIBRATIONS, load_model_config, ModelConfig
from affordance_grounding.model.backbones import WeightsUnavailableError
from affordance_grounding.model.checkpoint import CheckpointError, load_grounder
from affordance_grounding.model.factory import build_grounder
from affordance_grounding.runtime.postprocess import render_overlay
from affordance_grounding.runtime.predictor import AffordancePredictor
import cv2
import numpy as np
import torch

SAMPLE_PHOTOS = ('coffee', 'chelsea', 'astronaut')


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--image', help='image file (any format OpenCV reads)')
    source.add_argument('--sample', choices=SAMPLE_PHOTOS,
                        help='a scikit-image sample photo (ships offline)')
    parser.add_argument('--action', required=True, help='affordance label, e.g. hold')
    parser.add_argument('--out', required=True, help='overlay PNG to write')
    model = parser.add_mutually_exclusive_group()
    model.add_argument('--checkpoint', help='our model bundle (.pt)')
    model.add_argument('--config', help='model config YAML; the head stays untrained')
    parser.add_argument('--calibration', default='clip', choices=CALIBRATIONS)
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--seed', type=int, default=0, help='seed for random initialisation')
    parser.add_argument('--save-heatmap', help='also save the float heatmap as .npy')
    return parser


def read_rgb(args: argparse.Namespace) -> np.ndarray:
    """Read the input photo as (H, W, 3) uint8 RGB."""
    if args.sample:
        import skimage.data

        return np.ascontiguousarray(getattr(skimage.data, args.sample)()[..., :3])
    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'cannot read image {args.image}: missing file or unsupported format')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_model(args: argparse.Namespace):
    """Return (grounder, untrained_reason or None) for the chosen model source."""
    torch.manual_seed(args.seed)
    if args.checkpoint:
        return load_grounder(args.checkpoint, device=args.device), None
    config = load_model_config(args.config) if args.config else ModelConfig()
    grounder = build_grounder(config).to(args.device)
    random_backbones = config.clip_weights is None or config.dino_weights is None
    reason = 'RANDOM WEIGHTS' if random_backbones else 'UNTRAINED HEAD'
    return grounder, reason


def main(argv: Optional[List[str]] = None) -> int:
    """Run one prediction; returns a process exit code."""
    logging.basicConfig(level=logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        rgb = read_rgb(args)
        grounder, untrained = load_model(args)
        predictor = AffordancePredictor(grounder, args.calibration)
        predictor.set_image(rgb)
        prediction = predictor.predict(args.action)
    except (ValueError, FileNotFoundError, CheckpointError, WeightsUnavailableError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    label = args.action if untrained is None else f'{args.action} ({untrained}: no meaning)'
    overlay = render_overlay(rgb, prediction.heatmap, label)
    side_by_side = np.concatenate([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), overlay], axis=1)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_path), side_by_side):
        print(f'error: cannot write {out_path}', file=sys.stderr)
        return 2
    if args.save_heatmap:
        np.save(args.save_heatmap, prediction.heatmap)
    if untrained:
        print(f'warning: {untrained}: the heatmap is not a real prediction', file=sys.stderr)
    peak_y, peak_x = np.unravel_index(np.argmax(prediction.heatmap), prediction.heatmap.shape)
    print(f'wrote {out_path}: action={args.action} peak=(x={peak_x}, y={peak_y}) '
          f'size={prediction.heatmap.shape[1]}x{prediction.heatmap.shape[0]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
