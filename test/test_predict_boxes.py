"""affordance_predict --box: object regions on one photo, end to end on the tiny model."""

import re

from affordance_grounding import predict
from affordance_grounding.inference.backends import OnnxRuntimeBackend
from affordance_grounding.perception.frame_processor import FrameInput, FrameProcessor
from affordance_grounding.perception.regions import parse_box
from affordance_grounding.perception.settings import OutputSettings
import cv2
import numpy as np
import pytest
import skimage.data

BOXES = ('40,60,200,180', '330,120,150,220', '0,0,0,0')  # two objects and the whole photo
GREEN_BGR = (0, 220, 0)  # the best region's box (perception/postprocess.py, draw_regions)


def test_predict_boxes_equal_the_frame_job_and_print_scores_best_first(tmp_path, tiny_onnx,
                                                                       capsys):
    out, heatmap_path = tmp_path / 'o.png', tmp_path / 'heat.npy'
    argv = ['--checkpoint', str(tiny_onnx), '--sample', 'coffee', '--action', 'hold',
            '--out', str(out), '--save-heatmap', str(heatmap_path)]
    for box in BOXES:
        argv += ['--box', box]
    code = predict.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rgb = np.ascontiguousarray(skimage.data.coffee()[..., :3])
    backend = OnnxRuntimeBackend(str(tiny_onnx), 'cpu').load()
    try:
        processor = FrameProcessor(backend)
        frame = FrameInput(rgb, 'hold', processor.labels.index('hold'),
                           boxes=[parse_box(box) for box in BOXES],
                           zero_size_is_whole_frame=True)
        expected = processor.process([frame], OutputSettings())[0]
    finally:
        backend.close()
    np.testing.assert_allclose(np.load(heatmap_path), expected.heatmap, atol=1e-5, rtol=0)
    lines = captured.out.splitlines()
    start = lines.index('regions scored for hold, best first:')
    printed = [re.fullmatch(r'  box (\S+): score ([0-9.]+)', line).groups()
               for line in lines[start + 1:]]
    assert sorted(box for box, _ in printed) == sorted(BOXES)
    scores = [float(score) for _, score in printed]
    assert scores == sorted(scores, reverse=True)
    assert scores == pytest.approx(sorted(expected.region_scores, reverse=True), abs=1e-3)
    best = parse_box(printed[0][0])
    if best.width == 0:  # the whole photo won: its box is the photo's border
        best = parse_box('0,0,600,400')
    overlay = cv2.imread(str(out), cv2.IMREAD_COLOR)[:, 600:]  # photo | overlay
    bottom = overlay[best.y + best.height - 1, best.x + best.width // 2]
    assert tuple(int(value) for value in bottom) == GREEN_BGR


def test_predict_boxes_leave_the_heatmap_zero_outside_their_windows(tmp_path, tiny_onnx,
                                                                    capsys):
    heatmap_path = tmp_path / 'heat.npy'
    code = predict.main(['--checkpoint', str(tiny_onnx), '--sample', 'coffee', '--action',
                         'cut with', '--out', str(tmp_path / 'o.png'), '--box', '450,300,60,40',
                         '--save-heatmap', str(heatmap_path)])
    assert code == 0, capsys.readouterr().err
    heatmap = np.load(heatmap_path)  # 60x40 box, margin 0.25: a 90 px square at 435..525
    assert heatmap[:, :435].max() == 0 and heatmap[:275].max() == 0
    assert heatmap[275:365, 435:525].max() > 0


@pytest.mark.parametrize('box, fragment', [
    ('1,2,3', "--box: box '1,2,3' is not x,y,w,h"),
    ('a,b,c,d', '--box'),
    ('700,500,10,10', "--box '700,500,10,10' is not inside the 600x400 photo"),
    ('10,10,99999,20', 'is not inside the 600x400 photo'),
])
def test_predict_bad_box_is_one_line_exit_2(tmp_path, tiny_onnx, capsys, box, fragment):
    code = predict.main(['--checkpoint', str(tiny_onnx), '--sample', 'coffee', '--action',
                         'hold', '--out', str(tmp_path / 'o.png'), f'--box={box}'])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err
    assert not (tmp_path / 'o.png').exists()
