"""The predict CLI end to end on the tiny random model (offline)."""

import os
from pathlib import Path
import shutil
import subprocess
import sys

from affordance_grounding import predict
from affordance_grounding.config import load_model_config
from affordance_grounding.inference.text_encoder import load_label_matcher, text_model_path
from affordance_grounding.model.checkpoint import load_bundle, record_weight_paths, save_bundle
from affordance_grounding.model.factory import build_grounder
from affordance_grounding.perception.postprocess import resize_to_input
from affordance_grounding.perception.preprocess import ImagePreprocessor
from affordance_grounding.vocabulary import AGD20K_SEEN
import cv2
import numpy as np
import pytest
import skimage.data
import torch


@torch.inference_mode()
def grounder_heatmap(grounder, rgb, label, calibration):
    """Compute the input-resolution heatmap in-process, straight from the nn.Module."""
    config = grounder.config
    image = ImagePreprocessor(config.image_size, config.dino_mean, config.dino_std)(rgb)
    class_index = torch.tensor([grounder.labels.index(label)])
    maps = grounder.forward_head(grounder.forward_features(image), class_index)
    network = grounder.heatmaps(maps, calibration)[0, 0].float().numpy()  # (S, S)
    return resize_to_input(network, rgb.shape[:2])


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
    expected = grounder_heatmap(tiny_grounder, rgb, 'cut_with', 'clip_local_mean')
    np.testing.assert_allclose(np.load(heatmap_path), expected, atol=1e-6, rtol=0)


def test_predict_takes_the_onnx_the_node_takes_and_the_node_spelling(tmp_path, tiny_onnx,
                                                                     tiny_bundle, capsys):
    heatmaps = {}
    for name, model in (('onnx', tiny_onnx), ('bundle', tiny_bundle)):
        heatmap_path = tmp_path / f'{name}.npy'
        code = predict.main(['--checkpoint', str(model), '--sample', 'coffee',
                             '--action', 'cut with', '--out', str(tmp_path / f'{name}.png'),
                             '--device', 'auto', '--save-heatmap', str(heatmap_path)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert 'action=cut_with' in captured.out
        heatmaps[name] = np.load(heatmap_path)
    assert 'backend=onnxruntime' in captured.out or 'backend=torch' in captured.out
    np.testing.assert_allclose(heatmaps['onnx'], heatmaps['bundle'], atol=1e-4, rtol=0)


def test_predict_action_spellings_match_the_node(tmp_path, tiny_config_path, capsys):
    for spelling in ('Cut_With', ' cut-with ', 'CUT WITH'):
        code = predict.main(['--config', str(tiny_config_path), '--sample', 'coffee',
                             '--action', spelling, '--out', str(tmp_path / 'o.png')])
        assert code == 0, capsys.readouterr().err
        assert 'action=cut_with' in capsys.readouterr().out


def test_predict_engine_or_corrupt_model_file_is_one_line(tmp_path, capsys):
    engine = tmp_path / 'model.engine'
    engine.write_bytes(b'not an engine')
    corrupt = tmp_path / 'model.onnx'
    corrupt.write_bytes(b'\x00' * 64)
    for model, fragment in ((engine, 'tensorrt'), (corrupt, 'corrupt')):
        code = predict.main(['--checkpoint', str(model), '--sample', 'coffee',
                             '--action', 'hold', '--out', str(tmp_path / 'o.png')])
        err = capsys.readouterr().err
        assert code == 2
        errors = [line for line in err.splitlines() if line.startswith('error: ')]
        assert len(errors) == 1 and fragment in errors[0] and str(model) in errors[0]
    assert not (tmp_path / 'o.png').exists()


def test_predict_onnx_with_another_calibration_is_a_clear_error(tmp_path, tiny_onnx, capsys):
    code = predict.main(['--checkpoint', str(tiny_onnx), '--sample', 'coffee',
                         '--action', 'hold', '--calibration', 'none',
                         '--out', str(tmp_path / 'o.png')])
    assert code == 2
    assert "exported with calibration 'clip' but 'none' was requested" in capsys.readouterr().err


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def synthetic_bundle(tmp_path_factory):
    """Save the synthetic model from the checkout, as training writes best.pt.

    Its config names the weight files relative to the checkout (config/model_synthetic.yaml).
    """
    config = load_model_config(str(REPO / 'config' / 'model_synthetic.yaml'))
    assert not Path(config.clip_weights).is_absolute()  # what made the bundle cwd-bound
    torch.manual_seed(0)
    grounder = build_grounder(config).eval()
    path = save_bundle(str(tmp_path_factory.mktemp('train') / 'best.pt'), grounder)
    assert load_bundle(str(path))['backbones'] == {}  # named weights, not embedded
    return path


def run_module_from(cwd, module, *args):
    """Run ``python -m module args`` in ``cwd``; the checkout is on PYTHONPATH (installed)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_saved_bundle_predicts_from_another_directory(synthetic_bundle, tmp_path):
    config = load_bundle(str(synthetic_bundle))['config']
    for key in ('clip_weights', 'dino_weights'):
        assert Path(config[key]).is_absolute() and Path(config[key]).is_file()
    result = run_module_from(tmp_path, 'affordance_grounding.predict', '--model',
                             str(synthetic_bundle), '--sample', 'coffee', '--action', 'hold',
                             '--out', 'o.png', '--device', 'cpu')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'o.png').is_file() and 'action=hold' in result.stdout


def test_record_weight_paths_keeps_tags_absolute_paths_and_null(tmp_path, monkeypatch):
    (tmp_path / 'w.bin').write_bytes(b'x')
    monkeypatch.chdir(tmp_path)
    recorded = record_weight_paths({'clip_weights': 'w.bin', 'dino_weights': 'pretrained',
                                    'labels': 'seen'})
    assert recorded == {'clip_weights': str(tmp_path / 'w.bin'), 'dino_weights': 'pretrained',
                        'labels': 'seen'}
    assert record_weight_paths({'clip_weights': None, 'dino_weights': '/a/b.pth'}) == {
        'clip_weights': None, 'dino_weights': '/a/b.pth'}


@pytest.mark.slow
def test_a_saved_bundle_exports_from_another_directory(synthetic_bundle, tmp_path):
    result = run_module_from(tmp_path, 'training.export', '--checkpoint', str(synthetic_bundle),
                             '--out', 'model.onnx', '--skip-tensorrt-check', '--text-tower')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'model.onnx').is_file() and (tmp_path / 'model.text.onnx').is_file()


def test_sample_without_scikit_image_is_one_error_line(tmp_path):
    code = ('import sys; sys.modules["skimage"] = None  # as if not installed\n'
            'from affordance_grounding import predict\n'
            'sys.exit(predict.main(["--config", sys.argv[1], "--sample", "coffee", '
            '"--action", "hold", "--out", "o.png"]))')
    result = subprocess.run([sys.executable, '-c', code, str(REPO / 'config' / 'model_tiny.yaml')],
                            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith('error: --sample needs scikit-image'), result.stderr
    assert 'pip install scikit-image' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'o.png').exists()


@pytest.fixture(scope='module')
def onnx_with_text_tower(tiny_onnx, tmp_path_factory):
    """Copy the tiny ONNX model and export the synthetic CLIP text tower next to it."""
    from training.export import export_text_tower

    model = tmp_path_factory.mktemp('text_fallback') / 'tiny.onnx'
    shutil.copy(tiny_onnx, model)
    export_text_tower(str(REPO / 'config' / 'model_synthetic.yaml'),
                      str(text_model_path(str(model))))
    return model


def test_predict_maps_phrases_as_the_node_does(onnx_with_text_tower, tmp_path, capsys):
    def predict_action(*action_args):
        code = predict.main(['--model', str(onnx_with_text_tower), '--sample', 'coffee',
                             '--out', str(tmp_path / 'o.png'), '--action', *action_args])
        return code, capsys.readouterr()

    code, captured = predict_action('grasp')
    assert code == 0 and 'action: grasp -> hold (synonym)' in captured.out
    matcher = load_label_matcher(str(onnx_with_text_tower), AGD20K_SEEN)
    label, margin, _ = matcher('slice it')
    code, captured = predict_action('slice it', '--action-min-text-margin', '-2')
    assert code == 0, captured.err
    assert f'action: slice it -> {label} (text similarity, margin {margin:.2f})' in captured.out
    code, captured = predict_action('flyaway')  # the default margin rejects it, as the node
    assert code == 2 and "error: unknown action 'flyaway' (nearest by text similarity" in (
        captured.err)
