"""Robot-view frames for bench.robot_view: three test objects, small, on a cluttered table.

Each frame is 640x480 and holds three objects of different kinds, each cut out of one of the
synthetic world's test images (the JPEG the data set holds, masked by the object's own part
masks, which :func:`training.synthetic.render_item` re-draws exactly) and pasted at 3-8% of
the frame on the world's clutter. Exactly one of the three affords the frame's action (the
test image's own); the other two are kinds the action does not act on in that setting, so
"which object affords it" has one answer. The target's ground truth is warped with its pixels.
"""

from dataclasses import dataclass
import json
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from affordance_grounding.perception.regions import Region
import cv2
import numpy as np
from training.synthetic import (
    ItemSpec, iter_item_specs, META_FILE, pairs_of_test_set, render_item, SETTINGS,
    SyntheticConfig)
from training.synthetic_render import draw_clutter

FRAME_HW = (480, 640)
OBJECTS_PER_FRAME = 3
AREA_RANGE = (0.03, 0.08)  # the object's box as a fraction of the frame
JITTER = 0.15  # a detector's error: +-15% of the box in position and size
GAP_PX = 8  # free pixels between two objects' boxes
PLACEMENT_TRIES = 500


@dataclass(frozen=True)
class PlacedObject:
    """One object of a frame.

    Attributes:
        spec: The test item it was cut from.
        tile_rgb: (S, S, 3) uint8 RGB: the original object-centric test image.
        tile_box: The object's tight box in the test image.
        box: The object's tight box in the frame (integer pixels, covering it).
    """

    spec: ItemSpec
    tile_rgb: np.ndarray
    tile_box: Region
    box: Region


@dataclass(frozen=True)
class RobotFrame:
    """One frame, its objects and the target's ground truth.

    Attributes:
        rgb: (480, 640, 3) uint8 RGB frame.
        action: The action asked for (the target test image's affordance).
        objects: The three objects, in random order.
        target: Index in ``objects`` of the one that affords the action.
        tile_gt: (S, S) uint8 GT of the target in its test image.
        frame_gt: (480, 640) uint8 GT of the target in the frame (0 elsewhere).
        jittered: One jittered box per object, as a detector would report it.
        setting: ``Seen`` or ``Unseen``.
    """

    rgb: np.ndarray
    action: str
    objects: Tuple[PlacedObject, ...]
    target: int
    tile_gt: np.ndarray
    frame_gt: np.ndarray
    jittered: Tuple[Region, ...]
    setting: str


def read_config(data_root: Path, setting: str) -> SyntheticConfig:
    """Return the generation settings a data set was built with (its synthetic_meta.json)."""
    meta = json.loads((data_root / setting / META_FILE).read_text())
    return SyntheticConfig(**meta['config'])


def list_test_specs(config: SyntheticConfig, setting: str) -> List[ItemSpec]:
    """Return every test item of one setting, in the data set's order."""
    return [spec for spec in iter_item_specs(config, setting) if spec.split == 'testset']


def tight_box(mask: np.ndarray) -> Region:
    """Return the integer box covering a boolean (H, W) mask's True pixels."""
    rows, cols = np.nonzero(mask)
    return Region(int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1),
                  int(rows.max() - rows.min() + 1))


def pick_distractors(rng: np.random.Generator, target: ItemSpec, specs: Sequence[ItemSpec],
                     setting: str) -> List[ItemSpec]:
    """Pick two test items of two other kinds that the target's action does not act on."""
    acting = pairs_of_test_set(setting)[target.affordance]
    kinds = sorted({spec.object_name for spec in specs} - set(acting))
    chosen = rng.choice(len(kinds), size=OBJECTS_PER_FRAME - 1, replace=False)
    picks = []
    for index in chosen:
        candidates = [spec for spec in specs if spec.object_name == kinds[index]]
        picks.append(candidates[int(rng.integers(len(candidates)))])
    return picks


def place_boxes(rng: np.random.Generator, sizes: Sequence[Tuple[float, float]]
                ) -> Optional[List[Tuple[int, int]]]:
    """Return top-left corners for boxes of these (w, h), inside and apart; None if stuck."""
    height, width = FRAME_HW
    corners: List[Tuple[int, int]] = []
    for box_w, box_h in sizes:
        for _ in range(PLACEMENT_TRIES):
            x = int(rng.integers(0, max(int(width - box_w), 1)))
            y = int(rng.integers(0, max(int(height - box_h), 1)))
            if all(_apart((x, y, box_w, box_h), (cx, cy, cw, ch))
                   for (cx, cy), (cw, ch) in zip(corners, sizes)):
                corners.append((x, y))
                break
        else:
            return None
    return corners


def _apart(first, second) -> bool:
    """Return True when two (x, y, w, h) boxes are at least GAP_PX apart."""
    x0, y0, w0, h0 = first
    x1, y1, w1, h1 = second
    return (x0 + w0 + GAP_PX <= x1 or x1 + w1 + GAP_PX <= x0
            or y0 + h0 + GAP_PX <= y1 or y1 + h1 + GAP_PX <= y0)


def jitter_box(rng: np.random.Generator, box: Region, amount: float = JITTER) -> Region:
    """Return a detector's version of a true box: centre and size off by up to +-amount."""
    shift_x, shift_y, grow_w, grow_h = rng.uniform(-amount, amount, 4)
    width, height = box.width * (1 + grow_w), box.height * (1 + grow_h)
    centre_x = box.x + box.width / 2 + shift_x * box.width
    centre_y = box.y + box.height / 2 + shift_y * box.height
    return Region.from_center(centre_x, centre_y, width, height)


def paste_object(frame: np.ndarray, tile_rgb: np.ndarray, mask: np.ndarray,
                 matrix: np.ndarray) -> None:
    """Blend the masked tile into the frame in place, moved by a 2x3 affine ``matrix``."""
    size = (frame.shape[1], frame.shape[0])
    pixels = cv2.warpAffine(tile_rgb, matrix, size, flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(mask.astype(np.float32), matrix, size, flags=cv2.INTER_LINEAR)
    alpha = alpha[..., None]  # (H, W, 1)
    frame[:] = np.rint(alpha * pixels + (1 - alpha) * frame).astype(np.uint8)


def build_frame(rng: np.random.Generator, data_root: Path, config: SyntheticConfig,
                target: ItemSpec, specs: Sequence[ItemSpec], setting: str) -> RobotFrame:
    """Compose one frame around ``target`` (see the module docstring)."""
    chosen = [target] + pick_distractors(rng, target, specs, setting)
    order = rng.permutation(OBJECTS_PER_FRAME)
    chosen = [chosen[index] for index in order]
    rendered = [render_item(config, spec) for spec in chosen]
    masks = [np.logical_or.reduce(list(item.part_masks.values())) for item in rendered]
    tile_boxes = [tight_box(mask) for mask in masks]
    scales = [math.sqrt(rng.uniform(*AREA_RANGE) * FRAME_HW[0] * FRAME_HW[1] / box.area)
              for box in tile_boxes]
    sizes = [(box.width * scale, box.height * scale) for box, scale in zip(tile_boxes, scales)]
    corners = place_boxes(rng, sizes)
    if corners is None:  # the frame is too full for these shapes: draw new sizes
        return build_frame(rng, data_root, config, target, specs, setting)
    frame = draw_clutter(rng, FRAME_HW[1])[:FRAME_HW[0]]  # (480, 640, 3) BGR
    frame = np.ascontiguousarray(frame[..., ::-1])  # RGB
    frame_gt = np.zeros(FRAME_HW, np.uint8)
    objects, target_index = [], int(np.flatnonzero(order == 0)[0])
    for index, spec in enumerate(chosen):
        tile_rgb = cv2.cvtColor(cv2.imread(str(spec.image_path(data_root))), cv2.COLOR_BGR2RGB)
        box, scale, (x, y) = tile_boxes[index], scales[index], corners[index]
        matrix = np.array([[scale, 0, x - scale * box.x], [0, scale, y - scale * box.y]])
        paste_object(frame, tile_rgb, masks[index], matrix)
        if index == target_index:
            frame_gt = cv2.warpAffine(rendered[index].gt, matrix, FRAME_HW[::-1],
                                      flags=cv2.INTER_LINEAR)
        frame_box = Region(x, y, math.ceil(sizes[index][0]), math.ceil(sizes[index][1]))
        objects.append(PlacedObject(spec, tile_rgb, box, frame_box))
    return RobotFrame(rgb=frame, action=target.affordance, objects=tuple(objects),
                      target=target_index, tile_gt=rendered[target_index].gt,
                      frame_gt=frame_gt,
                      jittered=tuple(jitter_box(rng, item.box) for item in objects),
                      setting=setting)


def build_frames(data_root: Path, setting: str, limit: Optional[int] = None,
                 seed: int = 0) -> List[RobotFrame]:
    """Build one frame per test image of a setting (``limit``: an even spread of them)."""
    config = read_config(data_root, setting)
    specs = list_test_specs(config, setting)
    targets = specs
    if limit is not None and limit < len(specs):
        targets = [specs[index] for index in np.linspace(0, len(specs) - 1, limit).astype(int)]
    frames = []
    for number, target in enumerate(targets):
        rng = np.random.default_rng([seed, SETTINGS.index(setting), number])
        frames.append(build_frame(rng, data_root, config, target, specs, setting))
    return frames
