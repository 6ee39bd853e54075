"""Model files are written atomically and with the umask's permissions (.pt, .onnx, engines)."""

import os
from pathlib import Path
import stat

from affordance_grounding.fileio import atomic_write, read_umask, write_bytes_atomically
from affordance_grounding.inference.engine_cache import (
    EngineCacheKey, EngineMetadata, write_engine_metadata)
from affordance_grounding.inference.io_spec import ModelMetadata
from affordance_grounding.model.checkpoint import save_bundle
import pytest
import torch
from training.checkpointing import save_train_state
from training.export import export_onnx


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    """Run the test under a given umask, restoring the previous one."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_read_umask_does_not_change_it(umask):
    assert read_umask() == umask
    assert read_umask() == umask


def test_bytes_follow_the_umask_and_leave_no_temporary(tmp_path, umask):
    path = write_bytes_atomically(tmp_path / 'sub' / 'model.engine', b'\x01\x02')
    assert path.read_bytes() == b'\x01\x02'
    assert mode_of(path) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ['model.engine']


def test_a_failing_writer_keeps_the_old_file(tmp_path):
    path = tmp_path / 'model.pt'
    path.write_bytes(b'old')

    def fail(temporary):
        temporary.write_bytes(b'half')
        raise RuntimeError('disk full')

    with pytest.raises(RuntimeError, match='disk full'):
        atomic_write(path, fail)
    assert path.read_bytes() == b'old'
    assert [p.name for p in tmp_path.iterdir()] == ['model.pt']


def test_bundle_state_and_engine_metadata_share_the_umask_mode(tmp_path, tiny_grounder, umask):
    expected = 0o666 & ~umask
    bundle = save_bundle(str(tmp_path / 'tiny.pt'), tiny_grounder)
    state = save_train_state(tmp_path / 'last.pt', trainable={},
                             optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)],
                                                       lr=0.1),
                             progress={'epoch': 0}, config={})
    meta = write_engine_metadata(str(tmp_path / 'model.json'), EngineMetadata(
        key=EngineCacheKey('0' * 64, '10.3', '8.7', 'fp32', 8), engine_sha256='0' * 64,
        model=ModelMetadata(labels=('hold',), calibration='clip', image_size=224,
                            grid_size=14, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))))
    assert {path.name: mode_of(Path(path)) for path in (bundle, state, meta)} == {
        'tiny.pt': expected, 'last.pt': expected, 'model.json': expected}


@pytest.mark.slow  # an end-to-end run: make test runs it, make test-fast does not
@pytest.mark.parametrize('mask', [0o022, 0o077])
def test_onnx_export_follows_the_umask(tmp_path, tiny_grounder, mask):
    previous = os.umask(mask)
    try:
        report = export_onnx(tiny_grounder, str(tmp_path / 'tiny.onnx'))
    finally:
        os.umask(previous)
    assert mode_of(report.path) == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ['tiny.onnx']
