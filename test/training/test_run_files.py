"""A run's files reach the disk atomically; evaluate and train agree on the device default."""

import ast
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from training import evaluate
from training.config import TrainConfig
from training.run_files import write_json, write_png

TRAINING = Path(__file__).resolve().parents[2] / 'training'
# Modules that write what a training, pretraining or evaluation run produces.
RUN_WRITERS = ('loop.py', 'evaluate.py', 'pretrain_backbones.py', 'contact_sheet.py',
               'checkpointing.py', 'run_files.py')
DIRECT_WRITES = {'write_text', 'write_bytes', 'imwrite', 'save'}  # .save: torch.save


def atomic_writer_bodies(tree: ast.AST) -> set:
    """Return the ids of every node inside a writer handed to ``atomic_write``.

    The writer is a lambda in the call or a function named there (a nested ``def``).
    """
    functions = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    writers = [functions.get(arg.id) if isinstance(arg, ast.Name) else arg
               for node in ast.walk(tree) if isinstance(node, ast.Call)
               and getattr(node.func, 'id', getattr(node.func, 'attr', '')) == 'atomic_write'
               for arg in node.args[1:2]]
    return {id(inner) for writer in writers if writer is not None
            for inner in ast.walk(writer)}


def find_direct_writes(path: Path):
    """Yield 'file:line call' for each file write that bypasses atomic_write.

    Appending to a log (``open('a')``) is not a file to replace and is allowed.
    """
    tree = ast.parse(path.read_text())
    atomic = atomic_writer_bodies(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in atomic:
            continue
        name = getattr(node.func, 'attr', getattr(node.func, 'id', ''))
        mode = next((arg.value for arg in node.args if isinstance(arg, ast.Constant)), 'r')
        if name in DIRECT_WRITES or (name == 'open' and set(str(mode)) & set('wx')):
            yield f'{path.name}:{node.lineno} {name}'


def test_training_runs_write_files_only_through_atomic_write():
    offenders = [hit for name in RUN_WRITERS for hit in find_direct_writes(TRAINING / name)]
    assert offenders == []


def test_direct_write_finder_sees_writes_outside_atomic_write(tmp_path):
    sample = tmp_path / 'sample.py'
    sample.write_text('def f(path, state, log):\n'
                      '    path.write_text("x")\n'
                      '    torch.save(state, path)\n'
                      '    open(path, "w")\n'
                      '    log.open("a")\n'
                      '    atomic_write(path, lambda temporary: temporary.write_text("x"))\n'
                      '    def writer(temporary):\n'
                      '        torch.save(state, temporary)\n'
                      '    atomic_write(path, writer)\n')
    assert list(find_direct_writes(sample)) == [
        'sample.py:2 write_text', 'sample.py:3 save', 'sample.py:4 open']


def test_write_json_and_png_replace_whole_files_or_nothing(tmp_path):
    target = tmp_path / 'run' / 'metrics.json'
    write_json(target, {'kld': 1.5})
    assert json.loads(target.read_text()) == {'kld': 1.5}
    with pytest.raises(TypeError):
        write_json(target, {'kld': object()})  # not serialisable: the old file stays
    assert json.loads(target.read_text()) == {'kld': 1.5}
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    sheet = write_png(tmp_path / 'run' / 'sheet.png', image)
    np.testing.assert_array_equal(cv2.imread(str(sheet)), image)
    assert sorted(path.name for path in target.parent.iterdir()) == ['metrics.json', 'sheet.png']


def test_evaluate_device_default_is_the_training_default(capsys):
    assert evaluate.build_parser().parse_args(
        ['--checkpoint', 'x.pt', '--data-root', 'd']).device == TrainConfig().device == 'auto'
    assert evaluate.main(['--checkpoint', 'x.pt', '--data-root', 'd', '--device', 'gpu']) == 2
    error = capsys.readouterr().err
    assert error.startswith('error: unknown device') and 'Traceback' not in error
