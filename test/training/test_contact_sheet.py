"""The contact sheet shared by training.evaluate and training.ablation_sheet."""

import cv2
import numpy as np
from training.contact_sheet import render_sheet_row, write_sheet


def test_sheet_row_has_input_each_map_and_gt_tiles():
    rgb = np.full((64, 64, 3), 128, np.uint8)
    hot_corner = np.zeros((14, 14), np.float32)
    hot_corner[:4, :4] = 5.0  # raw logits: the row min-maxes them like the evaluation
    gt = np.zeros((224, 224))
    row = render_sheet_row(rgb, [('a', hot_corner), ('b', -hot_corner)], gt, 'GT', tile=32)
    assert row.shape == (32, 4 * 32, 3) and row.dtype == np.uint8
    np.testing.assert_array_equal(row[:, :32], np.full((32, 32, 3), 128, np.uint8))
    first, second = row[:8, 32:40].astype(int), row[:8, 64:72].astype(int)
    assert np.abs(first - second).sum() > 0  # opposite maps colour the corner differently


def test_write_sheet_stacks_rows_and_writes_an_empty_sheet(tmp_path):
    rows = [np.full((8, 24, 3), value, np.uint8) for value in (10, 200)]
    sheet = cv2.imread(str(write_sheet(tmp_path / 'a' / 'sheet.png', rows, (8, 24))))
    assert sheet.shape == (16, 24, 3) and sheet[0, 0, 0] == 10 and sheet[15, 0, 0] == 200
    empty = cv2.imread(str(write_sheet(tmp_path / 'empty.png', [], (8, 40))))
    assert empty.shape == (8, 40, 3) and not empty.any()
