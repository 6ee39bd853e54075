"""The predict CLI end to end on the tiny random model (offline)."""

from affordance_grounding import predict
from affordance_grounding.model.checkpoint import save_bundle
from affordance_grounding.runtime.predictor import AffordancePredictor
import cv2
import numpy as np
import skimage.data


def test_predict_main_writes_side_by_side_png(tmp_path, tiny_config_path, capsys):
    out = tmp_path / 'nested' / 'o.png'
    heatmap_path = tmp_path / 'heat.npy'
    code = predict.main(['--config', str(tiny_config_path), '--sample', 'coffee',
                         '--action', 'hold', '--out', str(out),
                         '--save-heatmap', str(heatmap_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    image = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (400, 1200, 3)  # coffee is 400x600, photo | overlay
    np.testing.assert_array_equal(image[:, :600], skimage.data.coffee()[..., ::-1])
    heatmap = np.load(heatmap_path)
    assert heatmap.shape == (400, 600)
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0 + 1e-6
    assert 'RANDOM WEIGHTS' in captured.err
    assert 'size=600x400' in captured.out


def test_predict_main_unknown_action_returns_2_with_labels(tmp_path, tiny_config_path,
                                                           capsys):
    out = tmp_path / 'o.png'
    code = predict.main(['--config', str(tiny_config_path), '--sample', 'coffee',
                         '--action', 'fly', '--out', str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "'fly'" in err
    for label in ('beat', 'hold', 'sit_on', 'write'):
        assert label in err
    assert not out.exists()


def test_predict_main_unreadable_image_returns_2(tmp_path, tiny_config_path, capsys):
    image = tmp_path / 'not_an_image.jpg'
    image.write_text('this is not a JPEG')
    code = predict.main(['--config', str(tiny_config_path), '--image', str(image),
                         '--action', 'hold', '--out', str(tmp_path / 'o.png')])
    assert code == 2
    assert 'not_an_image.jpg' in capsys.readouterr().err


def test_predict_main_missing_checkpoint_returns_2(tmp_path, capsys):
    code = predict.main(['--checkpoint', str(tmp_path / 'absent.pt'), '--sample', 'coffee',
                         '--action', 'hold', '--out', str(tmp_path / 'o.png')])
    assert code == 2
    assert 'absent.pt' in capsys.readouterr().err


def test_predict_main_checkpoint_matches_predictor(tmp_path, tiny_grounder, capsys):
    bundle = save_bundle(str(tmp_path / 'tiny.pt'), tiny_grounder, include_backbones=True)
    rgb = np.random.default_rng(9).integers(0, 256, size=(90, 130, 3), dtype=np.uint8)
    image = tmp_path / 'photo.png'
    cv2.imwrite(str(image), rgb[..., ::-1])
    heatmap_path = tmp_path / 'heat.npy'
    code = predict.main(['--checkpoint', str(bundle), '--image', str(image),
                         '--action', 'cut_with', '--calibration', 'clip_local_mean',
                         '--out', str(tmp_path / 'o.png'), '--save-heatmap', str(heatmap_path)])
    assert code == 0, capsys.readouterr().err
    predictor = AffordancePredictor(tiny_grounder, calibration='clip_local_mean')
    predictor.set_image(rgb)
    expected = predictor.predict('cut_with').heatmap
    np.testing.assert_allclose(np.load(heatmap_path), expected, atol=1e-6, rtol=0)
