"""Tests for training.synthetic_world and the object scale of the synthetic world."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from training import synthetic, synthetic_render, synthetic_world

WORLD_JSON = Path(__file__).resolve().parents[2] / 'docs' / 'synthetic_world.json'


def test_count_part_patches_counts_patches_half_covered_by_the_gt():
    """A GT filling 2 x 2 patches exactly counts 4; one filling half a patch counts it."""
    gt = np.zeros((224, 224), np.uint8)
    gt[32:64, 48:80] = 255
    assert synthetic_world.count_part_patches(gt) == 4
    half = np.zeros((224, 224), np.uint8)
    half[0:8, 0:16] = 255  # half of one patch: its mean is exactly half the peak
    assert synthetic_world.count_part_patches(half) == 1
    half[0:7, 0:16] = 0
    assert synthetic_world.count_part_patches(half) == 0


def test_world_json_meets_the_part_area_bars_for_the_default_scale():
    """Every label's acting part spans >= 4 patches, and >= 8 on average, in both settings."""
    report = json.loads(WORLD_JSON.read_text())
    assert report['default_scale'] == 'v3'
    default = report['scales']['v3']
    assert tuple(default['object_long_side']) == synthetic.SyntheticConfig().object_long_side
    for setting in synthetic.SETTINGS:
        areas = default['part_area_patches'][setting]
        assert sorted(areas['per_label']) == sorted(synthetic.LABELS)
        assert areas['smallest_label_mean'] >= 4.0, setting
        assert areas['mean_of_labels'] >= 8.0, setting
    # The v2 world is the reason for v3: its smallest parts spanned about one patch.
    assert report['scales']['v2']['part_area_patches']['Seen']['smallest_label_mean'] < 4.0


def test_world_json_is_what_the_code_measures():
    """The committed part areas are reproduced by measuring the default world again."""
    report = json.loads(WORLD_JSON.read_text())
    config = synthetic.SyntheticConfig(test_per_object=report['test_per_object'])
    measured = synthetic_world.measure_part_areas(config, 'Seen')
    assert measured == report['scales']['v3']['part_area_patches']['Seen']['per_label']


def test_v2_scale_is_still_available():
    """``at_scale('v2')`` draws the old, smaller objects; unknown names fail clearly."""
    old = synthetic.SyntheticConfig.at_scale('v2')
    assert old.object_long_side == old.exo_long_side == (0.44, 0.64)
    spec = synthetic.ItemSpec('testset', 'egocentric', 'sit_on', 'chair', 0)
    area = {name: int(synthetic.render_item(config, spec).part_masks['seat'].sum())
            for name, config in (('v2', old), ('v3', synthetic.SyntheticConfig()))}
    assert area['v3'] > 2 * area['v2']
    with pytest.raises(ValueError, match='unknown world scale'):
        synthetic.SyntheticConfig.at_scale('v9')


@pytest.mark.parametrize('long_side', [(0.05, 0.5), (0.6, 0.5), (0.5, 1.2)])
def test_config_rejects_impossible_object_sizes(long_side):
    """Long sides must be an ordered range inside [0.1, 1] of the image."""
    with pytest.raises(ValueError, match='object_long_side'):
        synthetic.SyntheticConfig(object_long_side=long_side)


def test_keep_head_in_view_moves_only_heads_outside_the_image():
    """A head above the top edge is moved down to touch it; one inside stays put."""
    inside = np.array([100.0, 120.0])
    assert np.array_equal(synthetic_render._keep_head_in_view(inside, 256, 1.0), inside)
    moved = synthetic_render._keep_head_in_view(np.array([100.0, 10.0]), 256, 1.0)
    head = moved + synthetic_render.HEAD_OFFSET
    assert head[1] == pytest.approx(synthetic_render.HEAD_RADIUS)
    assert moved[0] == 100.0


def test_world_sheet_shows_both_settings_and_the_exocentric_views(tmp_path):
    """One row per setting plus one of exocentric images, one tile per (label, object)."""
    path = synthetic_world.write_world_sheet(tmp_path / 'sheet.png',
                                             synthetic.SyntheticConfig(image_size=64), tile=48)
    sheet = cv2.imread(str(path))
    assert sheet.shape == (3 * 48, 9 * 48, 3)
