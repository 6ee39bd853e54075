"""Auto selection: order of docs/export.md, skip reasons, fall-through, bad files never skipped."""

import logging

from affordance_grounding.inference import selection
from affordance_grounding.inference.backends import OnnxRuntimeBackend, TorchBackend
from affordance_grounding.inference.io_spec import BackendUnavailableError, ModelFileError
from affordance_grounding.inference.selection import (
    AUTO_ORDER, Environment, find_skip_reasons, list_candidates, select_backend)
import pytest
import torch

GPU_MACHINE = Environment(cuda_available=True, tensorrt_problem=None, onnxruntime_problem=None,
                          onnxruntime_providers=('CUDAExecutionProvider',
                                                 'CPUExecutionProvider'))
CPU_MACHINE = Environment(cuda_available=False, tensorrt_problem='tensorrt is not importable',
                          onnxruntime_problem=None,
                          onnxruntime_providers=('CPUExecutionProvider',))
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason='checks a CPU-only machine')


def test_auto_order_is_the_export_design_order():
    assert AUTO_ORDER == (('tensorrt', 'cuda'), ('torch', 'cuda'), ('onnxruntime', 'cuda'),
                          ('onnxruntime', 'cpu'), ('torch', 'cpu'))
    assert list_candidates('auto', 'auto') == list(AUTO_ORDER)
    assert list_candidates('auto', 'cpu') == [('onnxruntime', 'cpu'), ('torch', 'cpu')]
    assert list_candidates('torch', 'cuda:1') == [('torch', 'cuda')]
    assert list_candidates('onnxruntime', 'auto') == [('onnxruntime', 'cuda'),
                                                      ('onnxruntime', 'cpu')]


def test_list_candidates_rejects_unknown_names():
    with pytest.raises(ValueError, match='unknown backend'):
        list_candidates('openvino', 'cpu')
    with pytest.raises(ValueError, match='unknown device'):
        list_candidates('auto', 'tpu')
    with pytest.raises(ValueError, match='does not run'):
        list_candidates('tensorrt', 'cpu')


def test_skip_reasons_on_a_cpu_machine():
    assert find_skip_reasons('tensorrt', 'cuda', 'onnx', CPU_MACHINE) == [
        'tensorrt is not importable', 'no CUDA device (torch.cuda.is_available() is False)']
    assert find_skip_reasons('torch', 'cuda', 'onnx', CPU_MACHINE) == [
        'needs a checkpoint bundle, got an ONNX graph',
        'no CUDA device (torch.cuda.is_available() is False)']
    assert find_skip_reasons('onnxruntime', 'cuda', 'onnx', CPU_MACHINE) == [
        'onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)']
    assert find_skip_reasons('onnxruntime', 'cpu', 'onnx', CPU_MACHINE) == []
    assert find_skip_reasons('onnxruntime', 'cpu', 'bundle', CPU_MACHINE) == [
        'needs an ONNX graph, got a checkpoint bundle']
    assert find_skip_reasons('torch', 'cpu', 'bundle', CPU_MACHINE) == []


def test_skip_reasons_on_a_gpu_machine():
    assert find_skip_reasons('tensorrt', 'cuda', 'onnx', GPU_MACHINE) == []
    assert find_skip_reasons('tensorrt', 'cuda', 'engine', GPU_MACHINE) == []
    assert find_skip_reasons('tensorrt', 'cuda', 'bundle', GPU_MACHINE) == [
        'needs an ONNX graph or a TensorRT engine, got a checkpoint bundle']
    assert find_skip_reasons('torch', 'cuda', 'bundle', GPU_MACHINE) == []
    assert find_skip_reasons('onnxruntime', 'cuda', 'onnx', GPU_MACHINE) == []


@cpu_only
def test_select_auto_picks_onnxruntime_cpu_for_onnx_and_logs_skips(tiny_onnx, caplog):
    with caplog.at_level(logging.INFO, logger='affordance_grounding.inference.selection'):
        backend = select_backend('auto', str(tiny_onnx))
    assert isinstance(backend, OnnxRuntimeBackend)
    assert (backend.name, backend.device) == ('onnxruntime', 'cpu')
    assert backend.loaded
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith('skipping')]
    assert [line.split(':')[0] for line in skipped] == [
        'skipping backend tensorrt (cuda)', 'skipping backend torch (cuda)',
        'skipping backend onnxruntime (cuda)']
    assert 'tensorrt' in skipped[0] and 'no CUDA device' in skipped[0]
    assert 'needs a checkpoint bundle' in skipped[1]
    assert 'CUDAExecutionProvider' in skipped[2]
    assert any('selected backend onnxruntime on cpu' in r.getMessage() for r in caplog.records)


@cpu_only
def test_select_auto_picks_torch_cpu_for_a_bundle(tiny_bundle, caplog):
    with caplog.at_level(logging.INFO, logger='affordance_grounding.inference.selection'):
        backend = select_backend('auto', str(tiny_bundle))
    assert isinstance(backend, TorchBackend)
    assert (backend.device, backend.precision) == ('cpu', 'fp32')
    messages = ' | '.join(r.getMessage() for r in caplog.records)
    assert 'onnxruntime (cpu): needs an ONNX graph, got a checkpoint bundle' in messages
    assert 'torch (cuda): no CUDA device' in messages


@cpu_only
def test_select_named_tensorrt_without_it_lists_the_reasons(tiny_onnx):
    with pytest.raises(BackendUnavailableError) as info:
        select_backend('tensorrt', str(tiny_onnx))
    assert 'tensorrt (cuda)' in str(info.value)
    assert 'no CUDA device' in str(info.value)


class FakeBackend:
    """Records load attempts; fails with BackendUnavailableError when told to."""

    attempts = []

    def __init__(self, backend, device, fail):
        """Remember which candidate this is."""
        self.backend, self.device, self.fail = backend, device, fail

    def load(self):
        """Record the attempt, then fail or return self."""
        FakeBackend.attempts.append((self.backend, self.device))
        if self.fail:
            raise BackendUnavailableError(f'{self.backend} failed to start')
        return self

    def describe(self):
        """Describe the fake."""
        return f'{self.backend} on {self.device}'


@pytest.mark.parametrize('path_name, failing, expected', [
    ('model.onnx', (), [('tensorrt', 'cuda')]),
    ('model.engine', (), [('tensorrt', 'cuda')]),
    ('model.pt', (), [('torch', 'cuda')]),
    ('model.onnx', ('tensorrt',), [('tensorrt', 'cuda'), ('onnxruntime', 'cuda')]),
    ('model.pt', ('torch',), [('torch', 'cuda'), ('torch', 'cpu')]),
])
def test_select_on_a_gpu_machine_follows_the_order(tmp_path, monkeypatch, path_name, failing,
                                                   expected):
    path = tmp_path / path_name
    path.write_bytes(b'weights')
    FakeBackend.attempts = []
    monkeypatch.setattr(selection, 'create_backend', lambda backend, model, device, options:
                        FakeBackend(backend, device, backend in failing and device == 'cuda'))
    chosen = select_backend('auto', str(path), environment=GPU_MACHINE)
    assert FakeBackend.attempts == expected
    assert (chosen.backend, chosen.device) == expected[-1]


def test_select_passes_the_cuda_index_through(tmp_path, monkeypatch):
    path = tmp_path / 'model.pt'
    path.write_bytes(b'weights')
    monkeypatch.setattr(selection, 'create_backend', lambda backend, model, device, options:
                        FakeBackend(backend, device, False))
    assert select_backend('auto', str(path), 'cuda:1', environment=GPU_MACHINE).device == 'cuda:1'


def test_select_never_skips_over_a_corrupt_model_file(tmp_path):
    path = tmp_path / 'corrupt.onnx'
    path.write_bytes(b'\x00' * 100)
    with pytest.raises(ModelFileError, match='corrupt'):
        select_backend('auto', str(path), environment=CPU_MACHINE)


def test_select_missing_or_unknown_file_gives_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match='not found'):
        select_backend('auto', str(tmp_path / 'absent.onnx'), environment=CPU_MACHINE)
    odd = tmp_path / 'model.tflite'
    odd.write_bytes(b'x')
    with pytest.raises(ModelFileError, match='unknown model file type'):
        select_backend('auto', str(odd), environment=CPU_MACHINE)
