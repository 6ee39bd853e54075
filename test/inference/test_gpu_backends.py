"""GPU backends (PyTorch CUDA, ONNX Runtime CUDA, TensorRT); skipped without CUDA.

Tolerances (docs/export.md): fp32 atol 1e-3 with TF32 off; fp16 per-map cosine >= 0.999.
"""

import importlib.util
import threading

from affordance_grounding.inference.backends import (
    BackendOptions, OnnxRuntimeBackend, TorchBackend)
from affordance_grounding.inference.engine_cache import engine_metadata_path
import numpy as np
import pytest
import torch
from training.parity import compute_min_map_cosine

HAS_CUDA = torch.cuda.is_available()
HAS_TENSORRT = importlib.util.find_spec('tensorrt') is not None
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason='needs CUDA')]
needs_tensorrt = pytest.mark.skipif(not HAS_TENSORRT, reason='needs tensorrt')


@pytest.fixture
def no_tf32():
    """Turn TF32 off for fp32 parity, restoring the previous settings afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope='module')
def cpu_reference(tiny_bundle, tiny_images):
    """Return PyTorch CPU fp32 outputs for batches 1 and 2."""
    backend = TorchBackend(str(tiny_bundle), 'cpu').load()
    return {batch: backend.infer(tiny_images[:batch]) for batch in (1, 2)}


def assert_matches(result, reference, atol):
    """Every output within ``atol`` of the reference."""
    for name in ('affordance', 'cam', 'affinity'):
        np.testing.assert_allclose(getattr(result, name), getattr(reference, name), rtol=0,
                                   atol=atol, err_msg=name)


@pytest.mark.parametrize('use_cuda_graphs', [False, True])
def test_torch_cuda_fp32_matches_cpu(tiny_bundle, tiny_images, cpu_reference, no_tf32,
                                     use_cuda_graphs):
    options = BackendOptions(precision='fp32', use_cuda_graphs=use_cuda_graphs)
    backend = TorchBackend(str(tiny_bundle), 'cuda', options).load()
    assert (backend.device, backend.precision) == ('cuda:0', 'fp32')
    for batch in (1, 2, 1):  # batch 1 twice: a captured graph is replayed with new data
        assert_matches(backend.infer(tiny_images[:batch]), cpu_reference[batch], 1e-3)


def test_torch_cuda_fp16_autocast_with_graphs_keeps_map_cosine(tiny_bundle, tiny_images,
                                                               cpu_reference):
    backend = TorchBackend(str(tiny_bundle), 'cuda').load()  # auto: fp16 on CUDA
    assert backend.precision == 'fp16'
    backend.warm_up(batch_size=2, iterations=2)
    for batch in (1, 2):
        result = backend.infer(tiny_images[:batch])
        assert result.cam.dtype == np.float32
        for name in ('cam', 'affinity'):
            cosine = compute_min_map_cosine(getattr(result, name),
                                            getattr(cpu_reference[batch], name))
            assert cosine >= 0.999, (batch, name, cosine)


def test_onnxruntime_cuda_matches_cpu(tiny_onnx, tiny_images, cpu_reference, no_tf32):
    import onnxruntime

    if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
        pytest.skip('onnxruntime has no CUDA provider')
    backend = OnnxRuntimeBackend(str(tiny_onnx), 'cuda').load()
    assert backend.device == 'cuda:0'
    for batch in (1, 2):
        assert_matches(backend.infer(tiny_images[:batch]), cpu_reference[batch], 1e-3)


@needs_tensorrt
def test_tensorrt_fp32_engine_builds_caches_and_matches(tiny_onnx, tiny_images, cpu_reference,
                                                        tmp_path):
    from affordance_grounding.inference.tensorrt_backend import TensorRTBackend

    options = BackendOptions(precision='fp32', engine_cache_dir=str(tmp_path), max_batch=4)
    backend = TensorRTBackend(str(tiny_onnx), 'cuda', options).load()
    engines = list(tmp_path.glob('*.engine'))
    assert len(engines) == 1 and engine_metadata_path(engines[0]).is_file()
    built_at = engines[0].stat().st_mtime_ns
    for batch in (1, 2):
        assert_matches(backend.infer(tiny_images[:batch]), cpu_reference[batch], 1e-3)
    TensorRTBackend(str(tiny_onnx), 'cuda', options).load()  # same key: reused
    assert engines[0].stat().st_mtime_ns == built_at
    direct = TensorRTBackend(str(engines[0]), 'cuda', options).load()
    assert direct.precision == 'fp32'


@needs_tensorrt
def test_tensorrt_contexts_are_per_thread(tiny_onnx, tiny_images, cpu_reference, tmp_path):
    from affordance_grounding.inference.tensorrt_backend import TensorRTBackend

    options = BackendOptions(precision='fp32', engine_cache_dir=str(tmp_path))
    backend = TensorRTBackend(str(tiny_onnx), 'cuda', options).load()
    results, errors = {}, []

    def worker(index):
        try:
            results[index] = backend.infer(tiny_images[:2])
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for result in results.values():
        assert_matches(result, cpu_reference[2], 1e-3)


def test_torch_cuda_graphs_infer_on_device_returns_own_tensors(tiny_bundle, tiny_images,
                                                               cpu_reference, no_tf32):
    options = BackendOptions(precision='fp32', use_cuda_graphs=True)
    backend = TorchBackend(str(tiny_bundle), 'cuda', options).load()
    first = backend.infer_on_device(tiny_images[:1])
    backend.infer_on_device(tiny_images[1:2])  # replays the graph: must not change `first`
    assert all(tensor.device.type == 'cuda' for tensor in first)
    for name, tensor in zip(('affordance', 'cam', 'affinity'), first):
        np.testing.assert_allclose(tensor.cpu().numpy(), getattr(cpu_reference[1], name),
                                   rtol=0, atol=1e-3, err_msg=name)


@pytest.mark.parametrize('use_cuda_graphs', [False, True])
def test_torch_cuda_pinned_and_pageable_outputs_are_identical(tiny_bundle, tiny_images,
                                                              use_cuda_graphs):
    results = []
    for pinned in (True, False):
        options = BackendOptions(precision='fp16', use_cuda_graphs=use_cuda_graphs,
                                 pinned_outputs=pinned)
        backend = TorchBackend(str(tiny_bundle), 'cuda', options).load()
        results.append([backend.infer(tiny_images[:batch]) for batch in (2, 1, 2)])
    for pinned, pageable in zip(*results):
        for name in ('affordance', 'cam', 'affinity'):
            np.testing.assert_array_equal(getattr(pinned, name), getattr(pageable, name))
    first, _, again = results[0]  # an earlier result is not overwritten by later calls
    assert not np.shares_memory(first.affordance, again.affordance)
