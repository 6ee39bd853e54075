"""Backend contract: ONNX Runtime and PyTorch give the same outputs behind one interface."""

import dataclasses

from affordance_grounding.inference.backends import (
    BackendOptions, GroundingResult, OnnxRuntimeBackend, TorchBackend)
from affordance_grounding.inference.io_spec import (
    BackendUnavailableError, ModelFileError, OUTPUT_NAMES)
from affordance_grounding.inference.onnx_model import load_onnx_model, write_onnx_metadata
import numpy as np
import onnx
import pytest
import torch


@pytest.fixture(scope='module')
def onnx_backend(tiny_onnx):
    """Return a loaded ONNX Runtime backend (one intra-op thread) for the tiny graph."""
    return OnnxRuntimeBackend(str(tiny_onnx), 'cpu', BackendOptions(intra_op_threads=1)).load()


@pytest.fixture(scope='module')
def torch_backend(tiny_bundle):
    """Return a loaded PyTorch CPU backend for the tiny bundle."""
    return TorchBackend(str(tiny_bundle), 'cpu').load()


@pytest.mark.parametrize('batch', [1, 2])
def test_backends_onnxruntime_and_torch_agree(onnx_backend, torch_backend, tiny_images, batch):
    images = tiny_images[:batch].numpy()
    from_onnx = onnx_backend.infer(images)
    from_torch = torch_backend.infer(images)
    for name in OUTPUT_NAMES:
        got, want = getattr(from_onnx, name), getattr(from_torch, name)
        assert isinstance(got, np.ndarray) and isinstance(want, np.ndarray)
        assert got.dtype == want.dtype == np.float32, name
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=name)
    assert from_onnx.affordance.shape == (batch, 36, 224, 224)
    assert from_onnx.cam.shape == from_onnx.affinity.shape == (batch, 36, 14, 14)


def test_backends_report_name_device_precision_and_metadata(onnx_backend, torch_backend,
                                                            tiny_config):
    assert (onnx_backend.name, onnx_backend.device, onnx_backend.precision) == (
        'onnxruntime', 'cpu', 'fp32')
    assert (torch_backend.name, torch_backend.device, torch_backend.precision) == (
        'torch', 'cpu', 'fp32')
    assert onnx_backend.describe() == 'onnxruntime on cpu (fp32)'
    for backend in (onnx_backend, torch_backend):
        assert backend.loaded
        assert backend.metadata.labels == tiny_config.labels
        assert backend.metadata.calibration == 'clip'
        assert backend.metadata.image_size == 224
    assert onnx_backend.metadata.source_sha256 == ''  # exported from memory, not a bundle
    assert len(torch_backend.metadata.source_sha256) == 64


def test_backends_accept_torch_tensors_and_numpy_alike(onnx_backend, torch_backend,
                                                       tiny_images):
    for backend in (onnx_backend, torch_backend):
        from_tensor = backend.infer(tiny_images[:1])
        from_array = backend.infer(tiny_images[:1].numpy())
        np.testing.assert_array_equal(from_tensor.cam, from_array.cam)


def test_backend_infer_before_load_raises(tiny_onnx, tiny_bundle):
    for backend in (OnnxRuntimeBackend(str(tiny_onnx)), TorchBackend(str(tiny_bundle))):
        assert not backend.loaded
        with pytest.raises(RuntimeError, match='load'):
            backend.infer(np.zeros((1, 3, 224, 224), np.float32))


@pytest.mark.parametrize('shape, dtype', [((3, 224, 224), np.float32),
                                          ((1, 3, 112, 112), np.float32),
                                          ((1, 224, 224, 3), np.float32),
                                          ((0, 3, 224, 224), np.float32),
                                          ((1, 3, 224, 224), np.float64),
                                          ((1, 3, 224, 224), np.uint8)])
def test_backend_rejects_malformed_batches(onnx_backend, torch_backend, shape, dtype):
    for backend in (onnx_backend, torch_backend):
        with pytest.raises(ValueError, match='float32'):
            backend.infer(np.zeros(shape, dtype))


def test_onnxruntime_backend_session_is_tuned_for_latency(onnx_backend):
    import onnxruntime

    options = onnx_backend._session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == (
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL)
    assert onnx_backend._session.get_providers() == ['CPUExecutionProvider']


def test_torch_backend_calibration_option_changes_affordance(tiny_bundle, tiny_grounder,
                                                             tiny_images):
    options = BackendOptions(calibration='none')
    backend = TorchBackend(str(tiny_bundle), 'cpu', options).load()
    result = backend.infer(tiny_images[:1])
    with torch.inference_mode():
        expected = tiny_grounder.heatmaps(tiny_grounder(tiny_images[:1]), 'none').numpy()
    np.testing.assert_allclose(result.affordance, expected, rtol=0, atol=1e-5)
    assert backend.metadata.calibration == 'none'


def test_backend_close_unloads(tiny_onnx):
    backend = OnnxRuntimeBackend(str(tiny_onnx)).load()
    backend.close()
    assert not backend.loaded
    with pytest.raises(RuntimeError, match='load'):
        backend.infer(np.zeros((1, 3, 224, 224), np.float32))


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only message')
def test_torch_backend_on_cuda_without_gpu_is_unavailable(tiny_bundle):
    with pytest.raises(BackendUnavailableError, match='CUDA'):
        TorchBackend(str(tiny_bundle), 'cuda').load()


def test_torch_backend_fp16_on_cpu_is_refused(tiny_bundle):
    with pytest.raises(ValueError, match='fp16'):
        TorchBackend(str(tiny_bundle), 'cpu', BackendOptions(precision='fp16')).load()


def test_onnxruntime_backend_without_cuda_provider_is_unavailable(tiny_onnx):
    import onnxruntime

    if 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has CUDA')
    with pytest.raises(BackendUnavailableError, match='onnxruntime-gpu'):
        OnnxRuntimeBackend(str(tiny_onnx), 'cuda').load()


def test_onnxruntime_backend_missing_file_names_it_and_the_fix(tmp_path):
    path = tmp_path / 'absent.onnx'
    with pytest.raises(ModelFileError) as info:
        OnnxRuntimeBackend(str(path)).load()
    assert str(path) in str(info.value) and 'docs/export.md' in str(info.value)
    assert 'training.export' not in str(info.value)  # robots do not install training/


@pytest.mark.parametrize('damage', ['empty', 'truncated', 'garbage'])
def test_onnxruntime_backend_damaged_file_gives_clear_error(tiny_onnx, tmp_path, damage):
    data = tiny_onnx.read_bytes()
    payload = {'empty': b'', 'truncated': data[:len(data) // 2],
               'garbage': b'\x00\xffnot an onnx model' * 64}[damage]
    path = tmp_path / f'{damage}.onnx'
    path.write_bytes(payload)
    with pytest.raises(ModelFileError) as info:
        OnnxRuntimeBackend(str(path)).load()
    message = str(info.value)
    assert str(path) in message
    assert 'docs/export.md' in message and 'training.export' not in message
    assert 'Traceback' not in message and len(message) < 1000


def rewrite_onnx(source, destination, **changes):
    """Copy an exported ONNX with some metadata fields changed."""
    from affordance_grounding.inference.onnx_model import read_onnx_metadata

    model = load_onnx_model(str(source))
    metadata = read_onnx_metadata(model, str(source))
    write_onnx_metadata(model, dataclasses.replace(metadata, **changes))
    onnx.save_model(model, str(destination))
    return destination


def test_onnxruntime_backend_rejects_other_label_list(tiny_onnx, tmp_path, tiny_config):
    labels = tuple(reversed(tiny_config.labels))
    with pytest.raises(ModelFileError, match='different order'):
        OnnxRuntimeBackend(str(tiny_onnx), 'cpu',
                           BackendOptions(expected_labels=labels)).load()
    with pytest.raises(ModelFileError) as info:
        OnnxRuntimeBackend(str(tiny_onnx), 'cpu',
                           BackendOptions(expected_labels=('hold', 'teleport'))).load()
    assert 'teleport' in str(info.value) and '36 labels' in str(info.value)


def test_onnxruntime_backend_rejects_other_calibration(tiny_onnx):
    with pytest.raises(ModelFileError, match='--calibration none'):
        OnnxRuntimeBackend(str(tiny_onnx), 'cpu', BackendOptions(calibration='none')).load()


def test_onnxruntime_backend_rejects_onnx_without_our_metadata(tmp_path):
    node = onnx.helper.make_node('Identity', ['image'], ['affordance'])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], 'plain', [value('image', 1, [1, 3])],
                                   [value('affordance', 1, [1, 3])])
    path = tmp_path / 'plain.onnx'
    # The IR version that goes with opset 17: ONNX Runtime 1.23 (Python 3.10) reads IR <= 11.
    model = onnx.helper.make_model_gen_version(
        graph, opset_imports=[onnx.helper.make_opsetid('', 17)])
    onnx.save_model(model, str(path))
    with pytest.raises(ModelFileError, match='no affordance_grounding metadata'):
        OnnxRuntimeBackend(str(path)).load()


def test_onnxruntime_backend_reads_edited_metadata(tiny_onnx, tmp_path):
    path = rewrite_onnx(tiny_onnx, tmp_path / 'renamed.onnx', source_sha256='abc')
    assert OnnxRuntimeBackend(str(path)).load().metadata.source_sha256 == 'abc'


@pytest.mark.parametrize('damage', ['missing', 'truncated'])
def test_torch_backend_damaged_bundle_gives_clear_error(tiny_bundle, tmp_path, damage):
    path = tmp_path / 'bundle.pt'
    if damage == 'truncated':
        data = tiny_bundle.read_bytes()
        path.write_bytes(data[:len(data) // 3])
    with pytest.raises(ModelFileError) as info:  # the runtime's one model-file error type
        TorchBackend(str(path)).load()
    assert str(path) in str(info.value)


def test_torch_backend_rejects_other_label_list(tiny_bundle):
    with pytest.raises(ModelFileError, match='labels'):
        TorchBackend(str(tiny_bundle), 'cpu',
                     BackendOptions(expected_labels=('hold', 'cut'))).load()


def test_torch_backend_from_grounder_matches_bundle(tiny_grounder, torch_backend, tiny_images):
    in_memory = TorchBackend(None, grounder=tiny_grounder).load()
    a = in_memory.infer(tiny_images[:1])
    b = torch_backend.infer(tiny_images[:1])
    assert isinstance(a, GroundingResult)
    np.testing.assert_array_equal(a.affinity, b.affinity)


def test_torch_backend_infer_on_device_matches_infer(torch_backend, tiny_images):
    tensors = torch_backend.infer_on_device(tiny_images[:2])
    result = torch_backend.infer(tiny_images[:2])
    assert [tensor.device.type for tensor in tensors] == ['cpu'] * 3
    for name, tensor in zip(OUTPUT_NAMES, tensors):
        np.testing.assert_array_equal(tensor.numpy(), getattr(result, name))
    with pytest.raises(ValueError, match='float32'):
        torch_backend.infer_on_device(tiny_images[:1].double())


def test_torch_backend_on_cpu_applies_intra_op_threads(tiny_bundle):
    saved = torch.get_num_threads()
    try:
        TorchBackend(str(tiny_bundle), 'cpu', BackendOptions(intra_op_threads=1)).load()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)
