r"""How big the synthetic world's acting parts are on the patch grid, and what they look like.

Every map the method makes lives on the 14 x 14 patch grid of a 224-px input, and part
discovery can only find a part that spans several patches. This module measures, per label,
how many patches the acting part covers in the test images (a patch counts when its mean GT
is at least half the GT's peak), writes it with the world's object scale (and, when given,
the backbone probes' results) to a JSON file, and draws a contact sheet of the world with its
GT::

    python -m training.synthetic_world --json docs/synthetic_world.json \
        --sheet docs/synthetic_world.png --probes docs/synthetic_backbones.json
"""

import argparse
import json
from pathlib import Path
import sys
from typing import Dict, List, Optional, Sequence

from affordance_grounding.fileio import atomic_write
from affordance_grounding.perception.postprocess import render_overlay
import cv2
import numpy as np
from training.synthetic import (
    ItemSpec, iter_item_specs, pairs_of_test_set, render_item, SETTINGS, SyntheticConfig,
    WORLD_SCALES)

INPUT_SIZE = 224  # network input side
PATCH = 16  # ViT patch side at INPUT_SIZE


def count_part_patches(gt: np.ndarray, input_size: int = INPUT_SIZE, patch: int = PATCH) -> int:
    """Patches of the input grid whose mean GT reaches half the GT's peak.

    Args:
        gt: ``(H, W)`` uint8 or float GT heat map (any scale; its peak is the reference).
        input_size: Side the GT is resized to, as the network input is.
        patch: Patch side at ``input_size``.

    Returns:
        The number of such patches: how many patches the acting part spans.
    """
    heat = cv2.resize(gt.astype(np.float32), (input_size, input_size),
                      interpolation=cv2.INTER_LINEAR)
    grid = input_size // patch
    means = heat[:grid * patch, :grid * patch].reshape(grid, patch, grid, patch).mean(axis=(1, 3))
    return int((means >= 0.5 * float(gt.max())).sum())


def measure_part_areas(config: SyntheticConfig, setting: str) -> Dict[str, Dict[str, float]]:
    """Acting-part area in patches per label over a setting's test images (mean, min, images)."""
    areas: Dict[str, List[int]] = {}
    for spec in iter_item_specs(config, setting):
        if spec.split == 'testset':
            gt = render_item(config, spec).gt
            areas.setdefault(spec.affordance, []).append(count_part_patches(gt))
    return {label: {'mean': float(np.mean(values)), 'min': int(np.min(values)),
                    'images': len(values)} for label, values in sorted(areas.items())}


def summarise_scale(scale: str, per_object: int, seed: int = 0) -> dict:
    """Object sizes of a named world scale and its part areas in both settings."""
    config = SyntheticConfig.at_scale(scale, seed=seed, test_per_object=per_object)
    summary = {'object_long_side': list(config.object_long_side),
               'exo_long_side': list(config.exo_long_side), 'part_area_patches': {}}
    for setting in SETTINGS:
        per_label = measure_part_areas(config, setting)
        summary['part_area_patches'][setting] = {
            'per_label': per_label,
            'mean_of_labels': float(np.mean([v['mean'] for v in per_label.values()])),
            'smallest_label_mean': float(min(v['mean'] for v in per_label.values()))}
    return summary


def write_world_sheet(path: Path, config: SyntheticConfig, tile: int = 160) -> Path:
    """Contact sheet: per setting one test image per pair with its GT, then exocentric images.

    Each row is a setting's test pairs (image with the GT over it); the last row shows one
    exocentric training image per Seen pair, where the actor must be in view.
    """
    rows = []
    for setting in SETTINGS:
        specs = [ItemSpec('testset', 'egocentric', affordance, name, 0, setting)
                 for affordance, table in sorted(pairs_of_test_set(setting).items())
                 for name in sorted(table)]
        rows.append([_tile(config, spec, tile) for spec in specs])
    exo = [ItemSpec('trainset', 'exocentric', affordance, name, 0)
           for affordance, table in sorted(pairs_of_test_set('Seen').items())
           for name in sorted(table)]
    rows.append([_tile(config, spec, tile) for spec in exo])
    width = max(len(row) for row in rows)
    blank = np.zeros((tile, tile, 3), np.uint8)
    sheet = np.concatenate([np.concatenate(row + [blank] * (width - len(row)), axis=1)
                            for row in rows], axis=0)
    ok, encoded = cv2.imencode('.png', sheet)
    if not ok:
        raise OSError(f'cv2.imencode could not encode the sheet for {path}')
    atomic_write(path, lambda temporary: temporary.write_bytes(encoded.tobytes()))
    return path


def _tile(config: SyntheticConfig, spec: ItemSpec, tile: int) -> np.ndarray:
    """One image at ``tile`` px, with its GT over it when it has one; BGR."""
    item = render_item(config, spec)
    image = cv2.resize(item.image_bgr, (tile, tile), interpolation=cv2.INTER_AREA)
    heat = np.zeros((tile, tile), np.float32)
    if item.gt is not None:
        heat = cv2.resize(item.gt.astype(np.float32) / 255.0, (tile, tile))
    title = f'{spec.affordance} {spec.object_name}'
    rgb = render_overlay(image[..., ::-1].copy(), heat, title, alpha=0.5 if item.gt is not None
                         else 0.0)
    return rgb if rgb.shape[:2] == (tile, tile) else cv2.resize(rgb, (tile, tile))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure both world scales, merge the probe files, write the JSON and the sheet."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', type=Path, required=True)
    parser.add_argument('--sheet', type=Path, help='contact sheet PNG of the default world')
    parser.add_argument('--per-object', type=int, default=10, help='test images per pair')
    parser.add_argument('--probes', type=Path, nargs='*', default=[],
                        help='probe JSON files (training.pretrain.probe --json) to include')
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.probes if not path.is_file()]
    if missing or args.per_object < 1:
        print(f'error: no such probe file: {", ".join(missing)}' if missing
              else 'error: --per-object must be >= 1', file=sys.stderr)
        return 2
    default = next(name for name, sides in WORLD_SCALES.items()
                   if sides == (SyntheticConfig().object_long_side,
                                SyntheticConfig().exo_long_side))
    report = {'default_scale': default, 'test_per_object': args.per_object,
              'measure': 'patches of the 14 x 14 grid of a 224-px input whose mean GT is at '
                         'least half the GT peak',
              'scales': {name: summarise_scale(name, args.per_object) for name in WORLD_SCALES},
              'probes': {path.name: json.loads(path.read_text()) for path in args.probes}}
    text = json.dumps(report, indent=2, sort_keys=True) + '\n'
    atomic_write(args.json, lambda temporary: temporary.write_text(text))
    for name, summary in report['scales'].items():
        for setting, areas in summary['part_area_patches'].items():
            per_label = ', '.join(f'{label} {v["mean"]:.1f} (min {v["min"]})'
                                  for label, v in areas['per_label'].items())
            print(f'{name} {setting}: mean {areas["mean_of_labels"]:.1f}; {per_label}')
    if args.sheet:
        write_world_sheet(args.sheet, SyntheticConfig())
    return 0


if __name__ == '__main__':
    sys.exit(main())
