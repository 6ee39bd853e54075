"""bench.robot_view: the frames it builds, and a tiny end-to-end run's JSON and contact sheet."""

import json
import math

from affordance_grounding.perception.regions import Region
from bench import robot_view
from bench.robot_view_eval import box_cells, ROWS, UNIFORM
from bench.robot_view_scenes import AREA_RANGE, build_frames, FRAME_HW, JITTER
import cv2
import numpy as np
import pytest
from training.synthetic import build_synthetic_dataset, pairs_of_test_set, SyntheticConfig


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    config = SyntheticConfig(seed=0, train_per_object=1, test_per_object=1)
    for setting in ('Seen', 'Unseen'):
        build_synthetic_dataset(root, config, setting=setting)
    return root


@pytest.mark.parametrize('setting', ['Seen', 'Unseen'])
def test_frames_hold_three_small_separate_objects_one_affording_the_action(data_root, setting):
    frames = build_frames(data_root, setting, limit=4)
    assert len(frames) == 4
    for frame in frames:
        assert frame.rgb.shape == FRAME_HW + (3,) and frame.rgb.dtype == np.uint8
        kinds = [item.spec.object_name for item in frame.objects]
        assert len(set(kinds)) == 3
        affording = [kind in pairs_of_test_set(setting)[frame.action] for kind in kinds]
        assert affording == [index == frame.target for index in range(3)]
        boxes = [item.box for item in frame.objects]
        for box in boxes:
            share = box.area / (FRAME_HW[0] * FRAME_HW[1])
            assert AREA_RANGE[0] * 0.95 <= share <= AREA_RANGE[1] * 1.1  # ceil'd pixels
            assert 0 <= box.x and box.x + box.width <= FRAME_HW[1] + 1
            assert 0 <= box.y and box.y + box.height <= FRAME_HW[0] + 1
        for first in range(3):
            for second in range(first + 1, 3):
                assert not overlaps(boxes[first], boxes[second])
        hot_rows, hot_cols = np.nonzero(frame.frame_gt > 128)
        target = boxes[frame.target]
        # The GT is warped with bilinear interpolation from a box corner at a fractional pixel:
        # its footprint may reach one pixel past the object's box (seen on the v3 world).
        assert hot_rows.size and target.x - 1 <= hot_cols.min() and hot_cols.max() < \
            target.x + target.width + 1 and target.y - 1 <= hot_rows.min() and \
            hot_rows.max() < target.y + target.height + 1
        for true, jittered in zip(boxes, frame.jittered):
            assert abs(jittered.width / true.width - 1) <= JITTER + 1e-9
            centre_shift = (jittered.x + jittered.width / 2) - (true.x + true.width / 2)
            assert abs(centre_shift) <= JITTER * true.width + 1e-9


def overlaps(first: Region, second: Region) -> bool:
    return not (first.x + first.width <= second.x or second.x + second.width <= first.x
                or first.y + first.height <= second.y or second.y + second.height <= first.y)


def test_frames_are_reproducible(data_root):
    first, second = (build_frames(data_root, 'Seen', limit=2, seed=5) for _ in range(2))
    assert all(np.array_equal(a.rgb, b.rgb) and a.jittered == b.jittered
               for a, b in zip(first, second))


def test_box_cells_cover_the_box_on_the_whole_frame_grid():
    cam = np.arange(2 * 14 * 14, dtype=np.float32).reshape(2, 14, 14)
    cells = box_cells(cam, Region(0, 0, 640, 480), FRAME_HW)
    assert cells.shape == (2, 14, 14)
    assert box_cells(cam, Region(630, 470, 10, 10), FRAME_HW).shape == (2, 1, 1)
    assert box_cells(cam, Region(320, 240, 92, 35), FRAME_HW).shape == (2, 2, 3)


@pytest.mark.slow  # an end-to-end run: make test runs it, make test-fast does not
def test_a_tiny_run_writes_finite_metrics_costs_and_a_sheet(data_root, tiny_bundle, tmp_path):
    out, sheet = tmp_path / 'robot_view.json', tmp_path / 'robot_view.png'
    code = robot_view.main(['--checkpoint', str(tiny_bundle), '--data-root', str(data_root),
                            '--backend', 'torch', '--frames', '2', '--timing-frames', '1',
                            '--timing-rounds', '1', '--sheet-frames', '1', '--out', str(out),
                            '--sheet', str(sheet)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report['machine'] and report['rows'] == list(ROWS)
    for setting in ('Seen', 'Unseen'):
        result = report['settings'][setting]
        assert result['frames'] == 2
        for row in ROWS + (UNIFORM, 'object-centric, whole image'):
            values = result['rows'][row]
            assert math.isfinite(values['kld']) and values['kld'] >= 0
            assert 0 <= values['sim'] <= 1 and math.isfinite(values['nss'])
        for row in ROWS:
            assert 0 <= result['rows'][row]['heat_share'] <= 1
            accuracy = result['rows'][row]['ranking_accuracy_by_score']
            assert set(accuracy) == {'softmax_mean_cam', 'mean_cam', 'peak_cam'}
            assert all(value in (0.0, 0.5, 1.0) for value in accuracy.values())
    timing = report['timing']
    rows = ('whole frame', '1 regions', '3 regions', '6 regions')
    assert set(timing['per_frame']) == {f'{kind}, {row}' for kind in ('frame job', 'inference')
                                        for row in rows}
    assert all(stats['median_s'] > 0 for stats in timing['per_frame'].values())
    assert timing['ratio_vs_whole_frame']['frame job, whole frame'] == 1.0
    assert timing['ratio_vs_whole_frame']['inference, whole frame'] == 1.0
    assert all(isinstance(target['met'], bool) for target in report['targets'].values())
    image = cv2.imread(str(sheet))
    assert image.shape == (2 * 240, 4 * 320, 3)


def test_a_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    assert robot_view.main(['--checkpoint', str(tmp_path / 'none.pt'),
                            '--data-root', str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith('error:') and error.count('\n') == 1
