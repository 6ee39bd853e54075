"""The demo's pictures: per-scene overlay/mask/heatmap PNGs and one contact sheet."""

from pathlib import Path
from typing import List, Optional, Tuple

from affordance_grounding.perception.image_codecs import image_msg_to_array
from affordance_grounding.perception.postprocess import draw_label
import cv2
from demo.scenes import Scene
import numpy as np
from sensor_msgs.msg import Image

TILE = 200
COLUMNS = ('image', 'node overlay', 'grasp mask', 'ground truth')


def image_msg_to_numpy(msg: Image) -> np.ndarray:
    """Decode the node's bgr8 / mono8 / 32FC1 outputs (the node's own decoder)."""
    return image_msg_to_array(msg)[0]


def write_scene_outputs(folder: Path, scene: Scene, outputs: dict) -> None:
    """Write ``<scene>_overlay.png``, ``_mask.png`` and ``_heatmap.png`` (colour-mapped)."""
    folder.mkdir(parents=True, exist_ok=True)
    heatmap = image_msg_to_numpy(outputs['heatmap'])
    cv2.imwrite(str(folder / f'{scene.name}_overlay.png'),
                image_msg_to_numpy(outputs['overlay']))
    cv2.imwrite(str(folder / f'{scene.name}_mask.png'), image_msg_to_numpy(outputs['grasp_mask']))
    levels = np.clip(heatmap * 255.0, 0, 255).astype(np.uint8)
    cv2.imwrite(str(folder / f'{scene.name}_heatmap.png'),
                cv2.applyColorMap(levels, cv2.COLORMAP_JET))


def to_tile(image: Optional[np.ndarray], caption: str) -> np.ndarray:
    """Return a TILE x TILE BGR tile of an image (or a blank one) with a caption."""
    if image is None:
        tile = np.full((TILE, TILE, 3), 40, np.uint8)
    else:
        bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        tile = cv2.resize(bgr, (TILE, TILE), interpolation=cv2.INTER_AREA)
    draw_label(tile, caption, (4, TILE - 6), 0.4, outline_px=1)
    return tile


def write_contact_sheet(path: Path, results: List[Tuple[Scene, dict]]) -> None:
    """One row per scene: image | overlay | grasp mask | ground truth (synthetic scenes)."""
    header = np.hstack([to_tile(None, name) for name in COLUMNS])[:24]
    rows = [header]
    for scene, outputs in results:
        point = outputs.get('grasp_point')
        where = (f' z={point.point.z:.2f}m' if point is not None else '')
        gt = None if scene.gt is None else cv2.applyColorMap(scene.gt, cv2.COLORMAP_JET)
        rows.append(np.hstack([
            to_tile(cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR), scene.name[:26]),
            to_tile(image_msg_to_numpy(outputs['overlay']), scene.action),
            to_tile(image_msg_to_numpy(outputs['grasp_mask']), 'mask' + where),
            to_tile(gt, 'GT' if gt is not None else 'no GT (real photo)')]))
    cv2.imwrite(str(path), np.vstack(rows))
