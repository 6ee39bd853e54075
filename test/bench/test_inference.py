"""bench.inference: row planning, parity, derived numbers, targets and a tiny end-to-end run."""

import json

from bench import inference
from bench.inference import (
    add_derived_numbers, compare_outputs, evaluate_targets, format_table, Probe, RowSpec,
    skip_reason)
from bench.timing import write_report
import numpy as np
import pytest

CPU_ONLY = Probe(cuda=False, onnxruntime_providers=('CPUExecutionProvider',),
                 tensorrt_problem='tensorrt does not import')
GPU_NO_ORT_CUDA = Probe(cuda=True, onnxruntime_providers=('CPUExecutionProvider',),
                        tensorrt_problem=None)


def test_skip_reasons_name_what_is_missing():
    reasons = {spec.label: skip_reason(spec, CPU_ONLY)
               for spec in inference.CPU_ROWS + inference.CUDA_ROWS}
    assert reasons['torch eager fp32'] is None
    assert reasons['onnxruntime cpu fp32'] is None
    assert 'no CUDA device' in reasons['torch cuda fp16 + graphs']
    assert 'no CUDA device' in reasons['tensorrt fp16']
    gpu = {spec.label: skip_reason(spec, GPU_NO_ORT_CUDA) for spec in inference.CUDA_ROWS}
    assert gpu['torch cuda fp16 + graphs'] is None and gpu['tensorrt fp16'] is None
    assert 'CUDAExecutionProvider' in gpu['onnxruntime cuda fp32']


class _Result:
    def __init__(self, affordance, cam, affinity):
        self.affordance, self.cam, self.affinity = affordance, cam, affinity


def test_compare_outputs_uses_the_tolerance_of_the_precision():
    rng = np.random.default_rng(0)
    base = _Result(*(rng.random((2, 3, 4, 4)).astype(np.float32) for _ in range(3)))
    close = _Result(*(getattr(base, name) + 5e-5 for name in ('affordance', 'cam', 'affinity')))
    assert compare_outputs(close, base, RowSpec('x', 'onnxruntime', 'cpu'))['ok']
    far = _Result(base.affordance, base.cam + 5e-4, base.affinity)
    assert not compare_outputs(far, base, RowSpec('x', 'onnxruntime', 'cpu'))['ok']
    assert compare_outputs(far, base, RowSpec('x', 'torch', 'cuda'))['ok']  # atol 1e-3
    scaled = _Result(base.affordance, base.cam * 1.5, base.affinity)  # cosine 1: fp16 passes
    parity = compare_outputs(scaled, base, RowSpec('x', 'torch', 'cuda', 'fp16'))
    assert parity['ok'] and parity['min_map_cosine']['cam'] == pytest.approx(1.0)


def _row(backend, kind, device, batch, ms, precision='fp32'):
    return {'backend': backend, 'kind': kind, 'device': device, 'precision': precision,
            'cuda_graphs': False, 'batch': batch, 'ms_per_frame': ms, 'best_ms_per_frame': ms,
            'frames_per_s': 1e3 / ms, 'spread': 0.1, 'samples': 3, 'parity': None}


def test_derived_numbers_and_targets():
    rows = [_row('torch eager fp32', 'torch', 'cpu', 1, 400.0),
            _row('onnxruntime cpu fp32', 'onnxruntime', 'cpu', 1, 300.0),
            _row('reference structure fp32', 'reference', 'cpu', 1, 600.0),
            _row('torch cuda fp16 + graphs', 'torch', 'cuda', 1, 2.0, 'fp16'),
            _row('torch cuda fp16 + graphs', 'torch', 'cuda', 64, 0.4, 'fp16'),
            _row('reference structure fp32', 'reference', 'cuda', 1, 10.0)]
    rows[3]['parity'] = {'ok': True, 'tolerance': 't', 'min_map_cosine': {'cam': 1.0}}
    machine = {'sgemm_gflops': 144.0, 'gpu_fp16_gemm_tflops': 432.0}
    add_derived_numbers(rows, machine, 43.2e9, {'batch 1': {'median': 72.0, 'best': 120.0}})
    ort = rows[1]
    assert ort['roofline_fraction'] == pytest.approx(1.0)  # best-of 144 beats 120 in rounds
    assert ort['roofline_fraction_same_load'] == pytest.approx(2.0)
    assert ort['speedup_vs_reference'] == 2.0
    assert rows[3]['speedup_vs_reference'] == 5.0
    assert rows[3]['roofline_fraction'] == pytest.approx(0.1 / 2.0, abs=1e-3)
    targets = {target['target']: target for target in evaluate_targets({'results': rows})}
    speedup = targets['CPU speed-up vs reference, batch 1 (onnxruntime cpu fp32)']
    assert speedup['holds'] and speedup['measured'] == 2.0
    assert targets['torch cuda fp16 + graphs, batch 1 ms/frame']['holds']
    assert targets['torch cuda fp16 + graphs, batch 64 frames/s']['holds']  # 2500 frames/s


@pytest.mark.slow
def test_tiny_run_writes_every_field(tiny_config, tmp_path):
    report = inference.run(repeats=1, batches=(1,), config=tiny_config, seed=3,
                           cache_dir=str(tmp_path / 'cache'), measure_gemm=False,
                           probe=CPU_ONLY)
    names = {(row['backend'], row['batch']) for row in report['results']}
    assert names == {('torch eager fp32', 1), ('onnxruntime cpu fp32', 1),
                     ('reference structure fp32', 1)}
    assert all(row['parity']['ok'] for row in report['results'] if row['parity'])
    assert {skip['backend'] for skip in report['skipped']} == {
        spec.label for spec in inference.CUDA_ROWS}
    assert report['reference_parity_max_relative_difference'] < 1e-4
    assert report['flop_per_frame'] == report['flop_per_frame_counted'] > 0
    assert set(report['machine']) >= {'cpu', 'cores', 'torch', 'onnxruntime', 'tensorrt', 'gpu'}
    assert report['targets'] and 'CPU speed-up' in report['targets'][3]['target']
    assert 'reference structure fp32' in format_table(report)
    path = write_report(report, str(tmp_path / 'inference.json'))
    assert json.loads(path.read_text())['results']
    cached = list((tmp_path / 'cache').glob('*.onnx'))
    assert len(cached) == 1 and 'seed3' in cached[0].name
    report = inference.run(repeats=1, batches=(2,), config=tiny_config, seed=3,
                           cache_dir=str(tmp_path / 'cache'), measure_gemm=False,
                           probe=CPU_ONLY)
    reference = [row for row in report['results'] if row['kind'] == 'reference'][0]
    assert (reference['batch'], reference['in_rounds_of_batch']) == (1, 2)  # one image a call
    ours = [row for row in report['results'] if row['kind'] == 'torch'][0]
    assert ours['speedup_vs_reference'] == pytest.approx(
        reference['ms_per_frame'] / ours['ms_per_frame'], rel=0.01)
