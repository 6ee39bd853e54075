"""Heatmap postprocessing: back to the input resolution, and the overlay."""

from typing import Optional, Sequence, Tuple

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
    draw_label(blended, label, (8, int(24 * scale) + 4), scale)
    return blended


LABEL_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_label(bgr: np.ndarray, label: str, origin: Tuple[int, int], scale: float,
               outline_px: int = 2) -> None:
    """Write white text with a black outline that follows the glyphs, in place.

    The outline is the text's own mask dilated by ``outline_px``. A second ``putText`` with a
    larger thickness would not do: OpenCV advances each glyph by its stroke thickness, so the
    thick shadow runs ahead of the thin text and leaves ghost letters ("cut_withh").

    Args:
        bgr: (H, W, 3) uint8 image, modified in place.
        label: Text to write.
        origin: Bottom-left corner (x, y) of the text baseline, as for ``cv2.putText``.
        scale: Font scale.
        outline_px: Width of the black outline.
    """
    (width, height), baseline = cv2.getTextSize(label, LABEL_FONT, scale, 1)
    pad = outline_px + 2
    left, top = origin[0] - pad, origin[1] - height - pad
    text = np.zeros((height + baseline + 2 * pad, width + 2 * pad), np.uint8)
    cv2.putText(text, label, (pad, pad + height), LABEL_FONT, scale, 255, thickness=1,
                lineType=cv2.LINE_AA)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * outline_px + 1,) * 2)
    halo = cv2.dilate(text, kernel)
    image_h, image_w = bgr.shape[:2]
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + text.shape[1], image_w), min(top + text.shape[0], image_h)
    if x1 <= x0 or y1 <= y0:
        return
    crop = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    ink = text[crop][..., None] / 255.0
    shade = halo[crop][..., None] / 255.0
    region = bgr[y0:y1, x0:x1].astype(np.float32) * (1.0 - shade)  # black outline
    region = region * (1.0 - ink) + 255.0 * ink  # white text on top
    bgr[y0:y1, x0:x1] = np.clip(np.rint(region), 0, 255).astype(np.uint8)


def draw_regions(bgr: np.ndarray, boxes: Sequence[Tuple[int, int, int, int]],
                 scores: Sequence[float], best: Optional[int]) -> None:
    """Draw every region's box with its affordance score, the best one highlighted, in place.

    Args:
        bgr: (H, W, 3) uint8 overlay.
        boxes: (x, y, width, height) pixel boxes.
        scores: Each box's score for the action, in [0, 1].
        best: Index of the best box (drawn thick and green), or None.
    """
    scale = max(0.35, min(bgr.shape[:2]) / 900.0)
    for index, ((x, y, width, height), score) in enumerate(zip(boxes, scores)):
        colour = (0, 220, 0) if index == best else (0, 215, 255)  # BGR: green, amber
        thickness = 3 if index == best else 1
        cv2.rectangle(bgr, (int(x), int(y)), (int(x + width - 1), int(y + height - 1)), colour,
                      thickness)
        baseline = int(y) - 4 if y > 20 else int(y + height) + int(16 * scale) + 2
        draw_label(bgr, f'{score:.2f}', (int(x) + 2, baseline), scale, outline_px=1)
