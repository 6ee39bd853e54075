"""bench.postprocess: both paths run on both kinds of maps, agree, and the report is written."""

import json

from affordance_grounding.perception.mask import compute_grasp_mask
from bench.postprocess import main, old_compute_grasp_mask, patch_noise_maps, scene_maps
import numpy as np


def test_maps_are_model_size_and_in_range():
    for heatmap, image in scene_maps(2) + patch_noise_maps(2):
        assert heatmap.shape == (224, 224) and heatmap.dtype == np.float32
        assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0 and heatmap.max() > 0.5
        assert image.shape == (224, 224, 3) and image.dtype == np.uint8


def test_baseline_mask_is_the_library_mask():
    for heatmap, _ in patch_noise_maps(3, seed=4):
        np.testing.assert_array_equal(old_compute_grasp_mask(heatmap, 0.5),
                                      compute_grasp_mask(heatmap, 0.5))


def test_main_writes_rows_for_every_size_kind_and_overlay(tmp_path, capsys):
    out = tmp_path / 'postprocess.json'
    assert main(['--sizes', '96x64,130x90', '--rounds', '2', '--maps', '1',
                 '--out', str(out)]) == 0
    rows = json.loads(out.read_text())['rows']
    assert {(row['size'], row['maps'], row['overlay']) for row in rows} == {
        (size, kind, overlay) for size in ('96x64', '130x90')
        for kind in ('scenes', 'patch noise') for overlay in (False, True)}
    for row in rows:
        assert row['masks_equal'] and row['min_mask_iou'] == 1.0
        assert row['heatmap_max_abs_diff'] == 0.0 and row['old_ms'] > 0 and row['new_ms'] > 0
        assert row.get('overlay_max_abs_diff', 0) == 0
    assert 'old/new' in capsys.readouterr().out
