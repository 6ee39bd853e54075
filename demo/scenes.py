"""The demo's image sequence: synthetic test scenes (with ground truth) and real photos."""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from affordance_grounding.ros.conversions import array_to_image_msg
import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

REAL_PHOTOS = (('coffee', 'drink_with'), ('coffee', 'hold'))  # scikit-image, ships offline


@dataclass
class Scene:
    """One image of the sequence and the action commanded for it.

    Attributes:
        name: File-name friendly identifier.
        rgb: (H, W, 3) uint8 RGB image.
        action: The action command sent before the image.
        gt: (H, W) uint8 ground-truth heatmap, or None for real photos.
    """

    name: str
    rgb: np.ndarray
    action: str
    gt: Optional[np.ndarray] = None

    def depth_msg(self, header: Header) -> Image:
        """Return a colour-aligned 16UC1 depth plane, 1.0 m (top row) to 1.5 m (bottom row)."""
        height, width = self.rgb.shape[:2]
        rows_m = np.linspace(1.0, 1.5, height, dtype=np.float32)[:, None]  # (H, 1)
        depth_mm = np.repeat(rows_m * 1000.0, width, axis=1).astype(np.uint16)  # (H, W)
        return array_to_image_msg(depth_mm, '16UC1', header)

    def camera_info(self, header: Header) -> CameraInfo:
        """Return pinhole intrinsics with a 53 degree horizontal field of view."""
        height, width = self.rgb.shape[:2]
        info = CameraInfo(header=header, height=height, width=width,
                          distortion_model='plumb_bob', d=[0.0] * 5)
        info.k = [float(width), 0.0, width / 2.0, 0.0, float(width), height / 2.0, 0.0, 0.0, 1.0]
        return info


def build_scenes(data_root: Path, per_label: int = 2) -> List[Scene]:
    """Synthetic test images (``per_label`` per affordance, ground truth kept) + real photos."""
    testset = data_root / 'Seen' / 'testset'
    scenes = []
    for label_dir in sorted((testset / 'egocentric').iterdir()):
        for path in sorted(label_dir.glob('*/*.jpg'))[:per_label]:
            gt_path = testset / 'GT' / label_dir.name / path.parent.name / f'{path.stem}.png'
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            gt = cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE) if gt_path.is_file() else None
            scenes.append(Scene(f'{label_dir.name}_{path.stem}',
                                cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), label_dir.name, gt))
    import skimage.data  # sample photos that ship with scikit-image (no download)

    for photo, action in REAL_PHOTOS:
        rgb = np.ascontiguousarray(getattr(skimage.data, photo)()[..., :3])
        scenes.append(Scene(f'{photo}_{action}', rgb, action))
    return scenes
