"""Contact sheet of bench.robot_view: frame with boxes and scores | whole frame | regions | GT.

One row per frame. The target's box is green, the others white; each box carries its region
score for the action (the true-box row's), so a glance shows whether the right object won.
"""

from typing import Dict, Sequence, Tuple

from affordance_grounding.perception.postprocess import draw_label, render_overlay
from bench.robot_view_eval import CHOSEN_SCORE, RowResult
from bench.robot_view_scenes import RobotFrame
import cv2
import numpy as np

TILE_HW = (240, 320)
TARGET_BGR = (0, 220, 0)
OTHER_BGR = (255, 255, 255)


def draw_boxes(bgr: np.ndarray, frame: RobotFrame, scores: Sequence[float]) -> np.ndarray:
    """Draw every true box with its score, in place; returns the image."""
    for index, (item, score) in enumerate(zip(frame.objects, scores)):
        box = item.box
        colour = TARGET_BGR if index == frame.target else OTHER_BGR
        cv2.rectangle(bgr, (box.x, box.y), (box.x + box.width, box.y + box.height), colour, 2)
        draw_label(bgr, f'{item.spec.object_name} {score:.2f}',
                   (box.x + 2, max(box.y - 6, 18)), 0.6)
    return bgr


def to_tile(bgr: np.ndarray) -> np.ndarray:
    """Shrink a full frame to a sheet tile."""
    return cv2.resize(bgr, TILE_HW[::-1], interpolation=cv2.INTER_AREA)


def render_row(frame: RobotFrame, results: Dict[str, RowResult]) -> np.ndarray:
    """Render one (240, 1280, 3) BGR row of the sheet."""
    scores = results['true boxes'].scores[CHOSEN_SCORE]
    framed = draw_boxes(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR), frame, scores)
    draw_label(framed, f'{frame.setting}: {frame.action}?', (8, 470), 0.8)
    whole = render_overlay(frame.rgb, results['whole frame'].heatmap, 'whole frame', 0.6)
    regions = draw_boxes(render_overlay(frame.rgb, results['true boxes'].heatmap,
                                        'regions (true boxes)', 0.6), frame, scores)
    gt = render_overlay(frame.rgb, frame.frame_gt / 255.0, 'ground truth', 0.6)
    return np.concatenate([to_tile(image) for image in (framed, whole, regions, gt)], axis=1)


def render_sheet(rows: Sequence[Tuple[RobotFrame, Dict[str, RowResult]]]) -> np.ndarray:
    """Stack the rows of the frames that kept their heatmaps into one BGR image."""
    if not rows:
        return np.zeros(TILE_HW + (3,), np.uint8)
    return np.concatenate([render_row(frame, results) for frame, results in rows], axis=0)
