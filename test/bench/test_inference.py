"""bench.inference: row planning, parity, derived numbers, targets and a tiny end-to-end run."""

import json

from affordance_grounding.inference.selection import Environment
from bench import inference
from bench.inference_report import evaluate_targets, format_table
from bench.model_cache import Int8Settings
from bench.parity import compare_outputs
from bench.roofline import add_roofline_fractions
from bench.rows import CPU_ROWS, CUDA_ROWS, needed_onnx_files, plan_rows, skip_reason
from bench.timing import write_report
import numpy as np
import pytest

CPU_ONLY = Environment(cuda_available=False, tensorrt_problem='tensorrt does not import',
                       onnxruntime_problem=None, onnxruntime_providers=('CPUExecutionProvider',))
GPU_NO_ORT_CUDA = Environment(cuda_available=True, tensorrt_problem=None,
                              onnxruntime_problem=None,
                              onnxruntime_providers=('CPUExecutionProvider',))


def test_skip_reasons_come_from_runtime_selection():
    reasons = {spec.label: skip_reason(spec, CPU_ONLY) for spec in CPU_ROWS + CUDA_ROWS}
    assert reasons['torch eager fp32'] is None
    assert reasons['onnxruntime cpu fp32'] is None
    assert reasons['onnxruntime cpu int8 dynamic'] is None
    assert 'no CUDA device' in reasons['torch cuda fp16 + graphs']
    assert 'tensorrt does not import' in reasons['tensorrt fp16']
    assert 'CUDAExecutionProvider' in reasons['onnxruntime cuda fp32']
    gpu = {spec.label: skip_reason(spec, GPU_NO_ORT_CUDA) for spec in CUDA_ROWS}
    assert gpu['torch cuda fp16 + graphs'] is None and gpu['tensorrt fp16'] is None
    assert 'CUDAExecutionProvider' in gpu['onnxruntime cuda fp32']


def test_plan_rows_and_the_onnx_files_they_need():
    planned, skipped = plan_rows(CPU_ROWS + CUDA_ROWS, CPU_ONLY)
    assert [spec.label for spec in planned] == [
        'torch eager fp32', 'onnxruntime cpu fp32', 'onnxruntime cpu int8 dynamic']
    assert [spec.onnx_key for spec in needed_onnx_files(planned)] == ['fp32', 'int8_dynamic']
    planned, skipped = plan_rows(CPU_ROWS, CPU_ONLY, int8_methods=('static', 'dynamic'))
    assert [spec.onnx_key for spec in needed_onnx_files(planned)] == [
        'fp32', 'int8_dynamic', 'int8_static']
    planned, skipped = plan_rows(CPU_ROWS, CPU_ONLY, int8_methods=())
    assert {'onnxruntime cpu int8 dynamic', 'onnxruntime cpu int8 static'} <= {
        skip['backend'] for skip in skipped}
    planned, _ = plan_rows(CPU_ROWS + CUDA_ROWS, GPU_NO_ORT_CUDA, cpu=False)
    assert [spec.onnx_key for spec in needed_onnx_files(planned)] == ['fp16']  # TensorRT


class _Result:
    def __init__(self, affordance, cam, affinity):
        self.affordance, self.cam, self.affinity = affordance, cam, affinity


def test_compare_outputs_uses_the_exporters_tolerance_of_the_precision():
    rng = np.random.default_rng(0)
    base = _Result(*(rng.random((2, 3, 4, 4)).astype(np.float32) for _ in range(3)))
    close = _Result(*(getattr(base, name) + 5e-5 for name in ('affordance', 'cam', 'affinity')))
    assert compare_outputs(close, base, 'fp32', 'cpu')['ok']
    far = _Result(base.affordance, base.cam + 5e-4, base.affinity)
    assert not compare_outputs(far, base, 'fp32', 'cpu')['ok']
    assert compare_outputs(far, base, 'fp32', 'cuda')['ok']  # atol 1e-3
    scaled = _Result(base.affordance, base.cam * 1.5, base.affinity)  # cosine 1: fp16 passes
    parity = compare_outputs(scaled, base, 'fp16', 'cuda')
    assert parity['ok'] and parity['min_map_cosine']['cam'] == pytest.approx(1.0)
    noisy = _Result(base.affordance, base.cam, rng.random((2, 3, 4, 4)).astype(np.float32))
    assert not compare_outputs(noisy, base, 'int8', 'cpu')['ok']  # unrelated maps


def _row(backend, kind, device, batch, ms, precision='fp32'):
    return {'backend': backend, 'kind': kind, 'device': device, 'precision': precision,
            'cuda_graphs': False, 'batch': batch, 'ms_per_frame': ms, 'best_ms_per_frame': ms,
            'frames_per_s': 1e3 / ms, 'spread': 0.1, 'samples': 3, 'parity': None}


def test_derived_numbers_and_targets():
    rows = [_row('torch eager fp32', 'torch', 'cpu', 1, 400.0),
            _row('onnxruntime cpu fp32', 'onnxruntime', 'cpu', 1, 300.0),
            _row('onnxruntime cpu int8 dynamic', 'onnxruntime', 'cpu', 1, 150.0, 'int8'),
            _row('reference structure fp32', 'reference', 'cpu', 1, 600.0),
            _row('torch cuda fp16 + graphs', 'torch', 'cuda', 1, 2.0, 'fp16'),
            _row('torch cuda fp16 + graphs', 'torch', 'cuda', 64, 0.4, 'fp16'),
            _row('reference structure fp32', 'reference', 'cuda', 1, 10.0)]
    rows[4]['parity'] = {'ok': True, 'tolerance': 't', 'min_map_cosine': {'cam': 1.0}}
    machine = {'sgemm_gflops': 144.0, 'gpu_fp16_gemm_tflops': 432.0}
    peak = {'fp32_gflops': 288.0, 'int8_gops': 576.0}
    add_roofline_fractions(rows, machine, peak, 43.2e9,
                           {'batch 1': {'median': 72.0, 'best': 120.0}})
    ort, int8 = rows[1], rows[2]
    assert ort['roofline_fraction'] == pytest.approx(0.5)  # against the 288 GFLOP/s peak
    assert ort['sgemm_fraction'] == pytest.approx(1.0)  # the old column: best-of 144 > 120
    assert ort['sgemm_fraction_same_load'] == pytest.approx(2.0)
    assert int8['roofline_fraction'] == pytest.approx(0.5)  # against the int8 peak
    assert int8['sgemm_fraction'] is None
    assert ort['speedup_vs_reference'] == 2.0
    assert rows[4]['speedup_vs_reference'] == 5.0
    assert rows[4]['roofline_fraction'] == pytest.approx(0.1 / 2.0, abs=1e-3)
    targets = {target['target']: target for target in evaluate_targets({'results': rows})}
    speedup = targets['CPU speed-up vs reference, batch 1 (onnxruntime cpu fp32)']
    assert speedup['holds'] and speedup['measured'] == 2.0
    assert not targets['CPU peak fraction, batch 1 (onnxruntime cpu fp32)']['holds']
    assert targets['CPU sgemm-roofline fraction (old), batch 1 (onnxruntime cpu fp32)']['holds']
    int8_target = targets['int8 vs fp32 ONNX Runtime CPU speed-up, batch 1 '
                          '(onnxruntime cpu int8 dynamic)']
    assert int8_target['measured'] == 2.0 and int8_target['holds']
    assert targets['torch cuda fp16 + graphs, batch 1 ms/frame']['holds']
    assert targets['torch cuda fp16 + graphs, batch 64 frames/s']['holds']  # 2500 frames/s
    assert targets['torch cuda fp16 + graphs heatmap parity vs fp32']['holds']


@pytest.mark.slow
def test_tiny_run_writes_every_field(tiny_config, tmp_path):
    report = inference.run(repeats=1, batches=(1,), config=tiny_config, seed=3,
                           cache_dir=str(tmp_path / 'cache'), measure_gemm=False,
                           environment=CPU_ONLY, int8=Int8Settings())
    names = {(row['backend'], row['batch']) for row in report['results']}
    assert names == {('torch eager fp32', 1), ('onnxruntime cpu fp32', 1),
                     ('onnxruntime cpu int8 dynamic', 1), ('reference structure fp32', 1)}
    int8 = [row for row in report['results'] if row['precision'] == 'int8'][0]
    assert 'cosine' in int8['parity']['tolerance']
    assert all(row['parity']['ok'] for row in report['results']
               if row['parity'] and row['precision'] == 'fp32')
    assert {skip['backend'] for skip in report['skipped']} == {
        spec.label for spec in CUDA_ROWS} | {'onnxruntime cpu int8 static'}
    assert report['reference_parity_max_relative_difference'] < 1e-4
    assert report['flop_per_frame'] == report['flop_per_frame_counted'] > 0
    assert set(report['machine']) >= {'cpu', 'cores', 'torch', 'onnxruntime', 'tensorrt', 'gpu'}
    assert any('int8 vs fp32' in target['target'] for target in report['targets'])
    assert 'onnxruntime cpu int8 dynamic' in format_table(report)
    path = write_report(report, str(tmp_path / 'inference.json'))
    assert json.loads(path.read_text())['results']
    cached = sorted(path.name for path in (tmp_path / 'cache').glob('*.onnx'))
    assert len(cached) == 2 and all('seed3' in name for name in cached)
    assert cached[1].endswith('_int8_dynamic.onnx')
    report = inference.run(repeats=1, batches=(2,), config=tiny_config, seed=3,
                           cache_dir=str(tmp_path / 'cache'), measure_gemm=False,
                           environment=CPU_ONLY, int8=None)
    reference = [row for row in report['results'] if row['kind'] == 'reference'][0]
    assert (reference['batch'], reference['in_rounds_of_batch']) == (1, 2)  # one image a call
    ours = [row for row in report['results'] if row['kind'] == 'torch'][0]
    assert ours['speedup_vs_reference'] == pytest.approx(
        reference['ms_per_frame'] / ours['ms_per_frame'], rel=0.01)
