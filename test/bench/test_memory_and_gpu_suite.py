"""bench.memory and bench.gpu_suite: the parts that run without a GPU."""

import importlib.util
import json
import sys

from affordance_grounding.model.checkpoint import save_bundle
from bench import gpu_suite, inference, memory
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


def test_gpu_suite_steps_name_things_that_exist(tmp_path):
    """Every step's command refers to real modules, memory cases and GPU tests."""
    steps = {step.name: step for step in gpu_suite.build_steps(tmp_path, 'python3', 5, 400)}
    assert list(steps) == ['inference', 'memory', 'pytest', 'multicam']
    command = steps['inference'].command
    assert command[1:3] == ['-m', 'bench.inference']
    args = inference.build_parser().parse_args(command[3:])  # bench.inference accepts it
    assert (args.cuda_batches, args.batches, args.repeats) == ([1, 8, 64], [1], 5)
    assert not args.no_cpu and not args.no_int8  # the CPU int8/fp32 parity rows run too
    assert args.out == str(tmp_path / 'inference.json')
    assert steps['pytest'].command[3:5] == ['-m', 'gpu']
    for step in steps.values():
        module = step.command[step.command.index('-m') + 1]
        assert importlib.util.find_spec(module) is not None, module
    memory_command = steps['memory'].command
    cases = memory_command[memory_command.index('--cases') + 1:memory_command.index('--out')]
    assert cases and set(cases) <= set(memory.CASES)
    test_files = [gpu_suite.REPO / arg for arg in steps['pytest'].command if arg.endswith('.py')]
    assert test_files and all('pytest.mark.gpu' in path.read_text() for path in test_files)
    multicam = steps['multicam'].command
    assert multicam[multicam.index('--batches') + 1] == '1,2,3' and 'cuda' in multicam
    assert sum(step.timeout_s for step in steps.values()) == pytest.approx(400)


def test_gpu_suite_targets_from_inference_json(tmp_path):
    assert gpu_suite.collect_targets(str(tmp_path / 'missing.json'))[0]['holds'] is False
    rows = [{'target': 'CPU speed-up', 'holds': True},
            {'target': 'torch cuda fp16 + graphs, batch 1 ms/frame', 'holds': True},
            {'target': 'onnxruntime cpu int8 heatmap parity vs fp32', 'holds': True},
            {'target': 'int8 vs fp32 ONNX Runtime CPU speed-up, batch 1', 'holds': False},
            {'target': 'tensorrt fp16 heatmap parity vs fp32', 'holds': True}]
    path = tmp_path / 'inference.json'
    path.write_text(json.dumps({'targets': rows}))
    assert [t['target'] for t in gpu_suite.collect_targets(str(path))] == [
        row['target'] for row in rows[1:]]
    path.write_text(json.dumps({'targets': rows[2:3]}))  # no fp16 + graphs row: a failure
    collected = gpu_suite.collect_targets(str(path))
    assert collected[-1]['measured'] is None and collected[-1]['holds'] is False


def test_gpu_suite_without_cuda_exits_2(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_suite, 'describe_gpu', lambda: {'cuda_available': False})
    assert gpu_suite.main(['--out', str(tmp_path)]) == gpu_suite.NO_CUDA_EXIT
    assert json.loads((tmp_path / 'suite.json').read_text())['status'] == 'no-cuda'


def test_gpu_suite_fails_when_the_gpu_rows_are_missing(tmp_path, monkeypatch):
    """Steps that run but write no inference rows: each is run and logged, the suite fails."""
    monkeypatch.setattr(gpu_suite, 'describe_gpu', lambda: {'cuda_available': True})
    quick = [gpu_suite.Step(name, [sys.executable, '-c', f'print("{name} ran")'], 60.0)
             for name in ('inference', 'memory', 'pytest')]
    monkeypatch.setattr(gpu_suite, 'build_steps', lambda *args: quick)
    assert gpu_suite.main(['--out', str(tmp_path)]) == 1  # no inference.json was written
    summary = json.loads((tmp_path / 'suite.json').read_text())
    assert [step['status'] for step in summary['steps']] == ['ok', 'ok', 'ok']
    for name in ('inference', 'memory', 'pytest'):
        assert f'{name} ran' in (tmp_path / f'{name}.log').read_text()
    assert summary['status'].startswith('failed') and summary['targets_met'] is False
