"""Overlay labels: the black outline hugs the white text (no ghost letters past its end)."""

from affordance_grounding.perception.postprocess import draw_label, render_overlay
import cv2
import numpy as np
import pytest


def ink_columns(image, dark):
    """Columns holding near-black (``dark``) or near-white pixels."""
    pixels = (image < 40).all(axis=2) if dark else (image > 215).all(axis=2)
    return np.flatnonzero(pixels.any(axis=0))


@pytest.mark.parametrize('label', ['cut_with', 'hold (RANDOM WEIGHTS: no meaning)', 'W'])
@pytest.mark.parametrize('height', [120, 480, 1080])
def test_outline_spans_the_text_and_no_more(label, height):
    rgb = np.full((height, height * 3, 3), 128, np.uint8)
    overlay = render_overlay(rgb, np.zeros(rgb.shape[:2], np.float32), label)
    white, black = ink_columns(overlay, dark=False), ink_columns(overlay, dark=True)
    assert white.size and black.size
    assert black.min() >= white.min() - 3 and black.max() <= white.max() + 3
    scale = max(0.4, height / 500.0)
    (width, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    assert white.max() - white.min() >= 0.9 * width - 4  # the text itself is all there


def test_label_at_the_image_border_is_clipped_not_an_error():
    image = np.full((20, 30, 3), 128, np.uint8)
    draw_label(image, 'cut_with', (-5, 10), 1.0)
    draw_label(image, 'cut_with', (100, 100), 1.0)  # entirely outside: nothing drawn
    assert (image > 215).all(axis=2).any()
