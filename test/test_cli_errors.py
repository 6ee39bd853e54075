"""User errors of the documented commands are one line on stderr, never a traceback."""

import os
from pathlib import Path
import subprocess
import sys
import time

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_TRAIN = str(REPO / 'training' / 'configs' / 'synthetic_tiny.yaml')
needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason='checks a CPU machine')


def run_cli(*args, cwd=REPO, timeout=300):
    """Run ``python -m ...`` like a user would; return the completed process."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-m', *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def assert_one_error_line(result, *fragments):
    """Exit code 2, exactly one stderr line starting with ``error:``, containing fragments."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert 'Traceback' not in result.stderr
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.slow  # an end-to-end run: make test runs it, make test-fast does not
def test_train_without_data_is_one_line_and_leaves_no_output_folder(tmp_path):
    out_dir = tmp_path / 'run'
    result = run_cli('training.train', '--config', TINY_TRAIN,
                     f'data_root={tmp_path / "absent"}', f'out_dir={out_dir}')
    assert_one_error_line(result, 'no usable images', 'absent')
    assert not out_dir.exists()


@pytest.mark.parametrize('override, fragments', [
    ('epochs=two', ("epochs='two'", 'an integer')),
    ('lr=fast', ("lr='fast'", 'a number')),
    ('amp=maybe', ("amp='maybe'", 'true or false')),
])
@pytest.mark.slow  # an end-to-end run: make test runs it, make test-fast does not
def test_train_bad_override_type_names_the_field_and_type(tmp_path, override, fragments):
    result = run_cli('training.train', '--config', TINY_TRAIN, f'out_dir={tmp_path / "r"}',
                     override)
    assert_one_error_line(result, *fragments)
    assert not (tmp_path / 'r').exists()


@needs_cpu_only
def test_predict_device_cuda_without_cuda_is_one_line(tmp_path, tiny_onnx):
    result = run_cli('affordance_grounding.predict', '--checkpoint', str(tiny_onnx),
                     '--sample', 'coffee', '--action', 'hold', '--device', 'cuda',
                     '--out', str(tmp_path / 'o.png'))
    assert_one_error_line(result, "device 'cuda'", 'no CUDA device', 'auto or cpu')


def test_predict_onnx_renamed_pt_is_one_line(tmp_path, tiny_onnx):
    renamed = tmp_path / 'model.pt'
    renamed.write_bytes(Path(tiny_onnx).read_bytes())
    result = run_cli('affordance_grounding.predict', '--checkpoint', str(renamed),
                     '--sample', 'coffee', '--action', 'hold', '--device', 'cpu',
                     '--out', str(tmp_path / 'o.png'))
    assert_one_error_line(result, 'model.pt', 'not a PyTorch checkpoint')


@pytest.mark.skipif(__import__('importlib').util.find_spec('tensorrt') is not None,
                    reason='TensorRT is installed here')
@pytest.mark.slow  # an end-to-end run: make test runs it, make test-fast does not
def test_export_tensorrt_engine_without_tensorrt_fails_before_exporting(tmp_path):
    started = time.monotonic()
    result = run_cli('training.export', '--config', str(REPO / 'config' / 'model_tiny.yaml'),
                     '--out', str(tmp_path / 'm.onnx'),
                     '--tensorrt-engine', str(tmp_path / 'm.engine'))
    seconds = time.monotonic() - started
    assert_one_error_line(result, 'tensorrt is not importable')
    assert list(tmp_path.iterdir()) == []  # nothing exported: the check came first
    assert 'wrote' not in result.stdout, seconds
