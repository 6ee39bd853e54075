"""Heatmap postprocessing: back to the input resolution, grasp masks and overlays."""

from typing import Tuple

import cv2
import numpy as np


def resize_to_input(heatmap: np.ndarray, input_hw: Tuple[int, int]) -> np.ndarray:
    """Undo the square resize of preprocessing (aspect not kept) with bilinear interpolation.

    Args:
        heatmap: (S, S) float32 map in the network frame.
        input_hw: (height, width) of the original image.

    Returns:
        (height, width) float32 map aligned with the original image.
    """
    height, width = input_hw
    heatmap = np.asarray(heatmap, dtype=np.float32)  # no copy when it is float32 already
    return cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)


def render_overlay(rgb: np.ndarray, heatmap: np.ndarray, label: str, alpha: float = 0.5,
                   colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Blend a colour-mapped heatmap onto the image and write the label.

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        heatmap: (H, W) float map in [0, 1].
        label: Text drawn in the top-left corner.
        alpha: Heatmap weight in the blend.
        colormap: OpenCV colormap id.

    Returns:
        (H, W, 3) uint8 BGR image (OpenCV order, ready for ``cv2.imwrite`` or a bgr8 message).
    """
    levels = np.multiply(heatmap, 255.0)  # the only float temporary: clipped in place
    np.clip(levels, 0, 255, out=levels)
    levels = levels.astype(np.uint8)
    colour = cv2.applyColorMap(levels, colormap)  # (H, W, 3) BGR
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    blended = cv2.addWeighted(bgr, 1.0 - alpha, colour, alpha, 0.0)
    scale = max(0.4, min(blended.shape[:2]) / 500.0)
    origin = (8, int(24 * scale) + 4)
    cv2.putText(blended, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                thickness=4, lineType=cv2.LINE_AA)
    cv2.putText(blended, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thickness=1, lineType=cv2.LINE_AA)
    return blended
