"""bench.int8_accuracy, bench.ort_profile and bench.bf16: the parts that run in seconds."""

from affordance_grounding.inference.backends import OnnxRuntimeBackend
from bench import bf16, int8_accuracy, ort_profile
import numpy as np
import pytest
from training.metrics import normalize_map


def test_onnx_maps_are_each_images_own_label(tiny_onnx, tiny_images):
    labels = [0, 5, 2]
    maps = int8_accuracy.onnx_maps(tiny_onnx, tiny_images, labels, batch=2)
    result = OnnxRuntimeBackend(str(tiny_onnx)).load().infer(tiny_images)
    for row, label in enumerate(labels):
        np.testing.assert_allclose(maps['none'][row], result.cam[row, label], rtol=1e-5)
        np.testing.assert_allclose(maps['clip'][row],
                                   result.affinity[row, label] * result.cam[row, label],
                                   rtol=1e-5, atol=1e-7)


def test_score_matches_a_perfect_and_a_wrong_prediction():
    rng = np.random.default_rng(0)
    maps14 = rng.random((2, 14, 14)).astype(np.float32)
    gts = [normalize_map(maps14[0]).astype(np.float64),
           normalize_map(maps14[1]).astype(np.float64)]
    perfect = int8_accuracy.score({'none': maps14, 'clip': maps14}, gts, ['a', 'b'])
    wrong = int8_accuracy.score({'none': 1.0 - maps14, 'clip': 1.0 - maps14}, gts, ['a', 'b'])
    assert perfect['clip']['kld'] == pytest.approx(0.0, abs=1e-3)
    assert perfect['clip']['sim'] == pytest.approx(1.0, abs=1e-3)
    assert wrong['clip']['kld'] > perfect['clip']['kld'] + 0.1
    assert wrong['none']['nss'] < perfect['none']['nss']


def test_ort_profile_sums_kernel_time_per_operator(tiny_onnx):
    profile = ort_profile.profile_file(str(tiny_onnx), frames=2, threads=1)
    assert profile['total_kernel_ms_per_frame'] > 0
    assert 'MatMul' in profile['by_op_ms'] or 'Gemm' in profile['by_op_ms']
    assert sum(profile['by_op_share'].values()) == pytest.approx(1.0, abs=0.01)


def test_bf16_probe_reports_whether_onnxruntime_has_a_kernel():
    probe = bf16.onnxruntime_bf16_matmul()
    assert set(probe) == {'available', 'reason'}
    assert probe['available'] or 'NOT_IMPLEMENTED' in probe['reason'] \
        or 'implementation' in probe['reason']
