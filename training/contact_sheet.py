"""Contact sheets of predicted maps: one row per test image, input | maps... | GT.

Shared by ``training.evaluate`` (the three calibrations of one model) and
``training.ablation_sheet`` (one map per ablation row), so the tiles look the same in both.
"""

from pathlib import Path
from typing import Sequence, Tuple

from affordance_grounding.perception.postprocess import render_overlay
import cv2
import numpy as np
from training.metrics import normalize_map
from training.run_files import write_png


def render_sheet_row(rgb: np.ndarray, maps: Sequence[Tuple[str, np.ndarray]], gt: np.ndarray,
                     gt_title: str, tile: int) -> np.ndarray:
    """Return one (tile, tile * (len(maps) + 2), 3) BGR row.

    Args:
        rgb: (S, S, 3) uint8 RGB input image.
        maps: (title, (G, G) raw map) pairs, each upsampled and min-max normalised as the
            evaluation does (``normalize_map``) before it is drawn.
        gt: (H, W) float ground truth in [0, 1].
        gt_title: Caption of the GT tile.
        tile: Side of each tile in pixels.
    """
    small = cv2.resize(rgb, (tile, tile), interpolation=cv2.INTER_AREA)  # (tile, tile, 3)
    tiles = [cv2.cvtColor(small, cv2.COLOR_RGB2BGR)]
    for title, raw in maps:
        heat = cv2.resize(normalize_map(raw.astype(np.float32)), (tile, tile))
        tiles.append(render_overlay(small, heat, title))
    tiles.append(render_overlay(small, cv2.resize(gt.astype(np.float32), (tile, tile)),
                                gt_title))
    return np.concatenate(tiles, axis=1)


def write_sheet(path: Path, rows: Sequence[np.ndarray], empty_shape: Tuple[int, int]) -> Path:
    """Stack the rows into a PNG (a dark ``empty_shape`` (H, W) image when there are none)."""
    sheet = (np.concatenate(rows, axis=0) if rows
             else np.zeros(empty_shape + (3,), np.uint8))
    return write_png(path, sheet)
