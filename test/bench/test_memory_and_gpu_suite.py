"""bench.memory and bench.gpu_suite: the parts that run without a GPU."""

import json

from affordance_grounding.model.checkpoint import save_bundle
from bench import gpu_suite, memory
import pytest


def test_list_cases_without_cuda():
    cases, skipped = memory.list_cases(False, ('CPUExecutionProvider',))
    assert cases == ['torch-cpu', 'onnxruntime-cpu']
    assert {skip['case'] for skip in skipped} == {
        'torch-cuda-fp32', 'torch-cuda-fp16-graphs', 'onnxruntime-cuda'}
    cases, skipped = memory.list_cases(True, ('CPUExecutionProvider',))
    assert 'torch-cuda-fp16-graphs' in cases
    assert skipped == [{'case': 'onnxruntime-cuda',
                        'reason': 'onnxruntime has no CUDAExecutionProvider'}]


def test_measure_case_reports_rss_in_process(tiny_grounder, tmp_path):
    bundle = save_bundle(str(tmp_path / 'tiny.pt'), tiny_grounder)
    result = memory.measure_case('torch-cpu', str(bundle), frames=1, batch=1)
    assert result['peak_rss_mib'] >= result['rss_after_load_mib'] > 0
    assert result['ru_maxrss_mib'] > 0 and 'gpu_max_allocated_mib' not in result


def test_gpu_suite_steps_cover_the_issue(tmp_path):
    steps = {step.name: step for step in gpu_suite.build_steps(tmp_path, 'python3', 5, 400)}
    assert list(steps) == ['inference', 'memory', 'pytest', 'multicam']
    inference = steps['inference'].command
    assert inference[inference.index('--cuda-batches') + 1:][:3] == ['1', '8', '64']
    assert '--no-cpu' in inference
    assert steps['pytest'].command[3:5] == ['-m', 'gpu']
    multicam = steps['multicam'].command
    assert multicam[multicam.index('--batches') + 1] == '1,2,3' and 'cuda' in multicam
    assert sum(step.timeout_s for step in steps.values()) == pytest.approx(400)


def test_gpu_suite_targets_from_inference_json(tmp_path):
    assert gpu_suite.collect_targets(str(tmp_path / 'missing.json'))[0]['holds'] is False
    report = {'targets': [{'target': 'CPU speed-up', 'holds': True},
                          {'target': 'torch cuda fp16 + graphs, batch 1 ms/frame',
                           'holds': True}]}
    path = tmp_path / 'inference.json'
    path.write_text(json.dumps(report))
    assert [t['target'] for t in gpu_suite.collect_targets(str(path))] == [
        'torch cuda fp16 + graphs, batch 1 ms/frame']


def test_gpu_suite_without_cuda_exits_2(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_suite, 'describe_gpu', lambda: {'cuda_available': False})
    assert gpu_suite.main(['--out', str(tmp_path)]) == gpu_suite.NO_CUDA_EXIT
    assert json.loads((tmp_path / 'suite.json').read_text())['status'] == 'no-cuda'


def test_gpu_suite_fails_when_the_gpu_rows_are_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_suite, 'describe_gpu', lambda: {'cuda_available': True})
    ran = []
    monkeypatch.setattr(gpu_suite, 'run_step', lambda step, out_dir: ran.append(step.name) or {
        'step': step.name, 'status': 'ok', 'seconds': 0.0, 'log': '', 'output': step.output})
    assert gpu_suite.main(['--out', str(tmp_path)]) == 1  # no inference.json was written
    summary = json.loads((tmp_path / 'suite.json').read_text())
    assert ran == ['inference', 'memory', 'pytest', 'multicam']
    assert summary['status'].startswith('failed') and summary['targets_met'] is False
