"""Heatmap resize back to the input and the BGR overlay."""

from affordance_grounding.perception.postprocess import render_overlay, resize_to_input
import cv2
import numpy as np


def test_resize_to_input_returns_input_shape_and_keeps_constant():
    heatmap = np.full((224, 224), 0.7, dtype=np.float32)
    resized = resize_to_input(heatmap, (300, 500))
    assert resized.shape == (300, 500)
    assert resized.dtype == np.float32
    np.testing.assert_allclose(resized, 0.7, atol=1e-6, rtol=0)


def test_resize_to_input_stretches_without_keeping_aspect():
    heatmap = np.zeros((224, 224), dtype=np.float32)
    heatmap[:, 112:] = 1.0  # right half hot
    resized = resize_to_input(heatmap.astype(np.float64), (100, 400))
    assert resized.dtype == np.float32
    np.testing.assert_allclose(resized[:, :190], 0.0, atol=1e-6)
    np.testing.assert_allclose(resized[:, 210:], 1.0, atol=1e-6)


def _text_box(shape, label):
    """Return the (rows, cols) slices the label may touch, from the overlay's text layout."""
    scale = max(0.4, min(shape[:2]) / 500.0)
    (width, height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 4)
    bottom = int(24 * scale) + 4 + baseline + 4
    return slice(0, bottom), slice(0, 8 + width + 4)


def test_render_overlay_alpha_zero_equals_bgr_input_outside_text():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(120, 200, 3), dtype=np.uint8)
    heatmap = rng.random((120, 200))
    overlay = render_overlay(rgb, heatmap, 'hold', alpha=0.0)
    assert overlay.shape == (120, 200, 3)
    assert overlay.dtype == np.uint8
    rows, cols = _text_box(rgb.shape, 'hold')
    outside = np.ones((120, 200), dtype=bool)
    outside[rows, cols] = False
    expected = rgb[..., ::-1]  # RGB -> BGR
    np.testing.assert_array_equal(overlay[outside], expected[outside])
    assert not np.array_equal(overlay[rows, cols], expected[rows, cols])


def test_render_overlay_alpha_one_shows_colour_map_outside_text():
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    heatmap = np.tile(np.linspace(0.0, 1.0, 64), (64, 1))
    overlay = render_overlay(rgb, heatmap, '', alpha=1.0)
    levels = np.clip(heatmap * 255.0, 0, 255).astype(np.uint8)
    expected = cv2.applyColorMap(levels, cv2.COLORMAP_JET)
    np.testing.assert_array_equal(overlay[30:], expected[30:])
    # JET is blue at 0 and red at 1, in BGR order.
    assert overlay[40, 0, 0] > 100 and overlay[40, 0, 2] < 50
    assert overlay[40, -1, 2] > 100 and overlay[40, -1, 0] < 50


def test_render_overlay_levels_clip_out_of_range_values_for_every_float_type():
    rgb = np.zeros((40, 64, 3), dtype=np.uint8)
    heatmap = np.tile(np.linspace(-0.5, 1.5, 64), (40, 1))  # (40, 64), beyond [0, 1] both ends
    for dtype in (np.float32, np.float64):
        values = heatmap.astype(dtype)
        overlay = render_overlay(rgb, values, '', alpha=1.0)
        levels = np.clip(values * 255.0, 0, 255).astype(np.uint8)  # truncated, as before
        expected = cv2.applyColorMap(levels, cv2.COLORMAP_JET)
        np.testing.assert_array_equal(overlay[20:], expected[20:])


def test_resize_to_input_leaves_its_input_untouched():
    heatmap = np.linspace(0.0, 1.0, 224 * 224, dtype=np.float32).reshape(224, 224)
    before = heatmap.copy()
    resized = resize_to_input(heatmap, (720, 1280))
    np.testing.assert_array_equal(heatmap, before)
    assert resized.shape == (720, 1280) and not np.shares_memory(resized, heatmap)
