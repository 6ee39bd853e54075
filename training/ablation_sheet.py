r"""One contact sheet comparing the ablation rows on the same test images.

``python -m training.ablation_sheet --out outputs/ablation --seed 0
--png docs/ablation_rows.png``

Columns: input, the six rows of ``training.ablation.ROWS`` (a: CE only map 1, b: its map 2,
c: + object prototypes, f: + part prototypes, h: + pixel loss, i: map 2 of the full
configuration), and the GT. Rows: test images spread over the (affordance, object) folders
of the chosen setting (Seen or Unseen). All runs share the frozen backbones, so the
test features are extracted once and only the heads differ.
"""

import argparse
from pathlib import Path
import sys
from typing import List, Optional

from affordance_grounding.model.checkpoint import load_grounder
import torch
from training.ablation import ROWS
from training.contact_sheet import render_sheet_row, write_sheet
from training.data import layout_for_model, TestDataset
from training.evaluate import extract_test_features, predict_maps

SHORT_TITLES = ('a CE', 'b +cal', 'c +obj', 'f +part', 'h +pix', 'i +cal')


def pick_rows(class_names: List[str], count: int) -> List[int]:
    """Spread ``count`` indices evenly over the (class-sorted) test items."""
    step = max(1, len(class_names) // count)
    return list(range(0, len(class_names), step))[:count]


def write_rows_sheet(out: Path, seed: int, png: Path, count: int = 9, tile: int = 128,
                     setting: str = 'Seen') -> Path:
    """Write the comparison sheet for one seed of an ablation output folder."""
    bundles = {name: load_grounder(str(out / name / f'seed{seed}' / 'best.pt'))
               for name in dict.fromkeys(config for _, config, _ in ROWS)}
    first = next(iter(bundles.values()))
    dataset = TestDataset(layout_for_model(str(out / 'data'), setting, first.config))
    features = extract_test_features(first, dataset, torch.device('cpu'))
    indices = pick_rows(features.class_names, count)
    maps = {name: predict_maps(grounder, features, indices)
            for name, grounder in bundles.items()}
    rows = []
    for row, index in enumerate(indices):
        rgb = features.images[index].permute(1, 2, 0).numpy()  # (S, S, 3) uint8
        titled = [(title, maps[config_name][map_name][row])
                  for title, (_, config_name, map_name) in zip(SHORT_TITLES, ROWS)]
        rows.append(render_sheet_row(rgb, titled, features.gts[index],
                                     f'GT {features.class_names[index]}', tile))
    return write_sheet(png, rows, (tile, tile * (len(ROWS) + 2)))


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments and write the sheet; returns an exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='outputs/ablation', help='ablation output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--png', default='docs/ablation_rows.png')
    parser.add_argument('--rows', type=int, default=9)
    parser.add_argument('--setting', choices=('Seen', 'Unseen'), default='Seen')
    args = parser.parse_args(argv)
    print(write_rows_sheet(Path(args.out), args.seed, Path(args.png), args.rows,
                           setting=args.setting))
    return 0


if __name__ == '__main__':
    sys.exit(main())
