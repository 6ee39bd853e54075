"""Interrupted training resumes step for step: SIGKILL after a mid-epoch checkpoint, SIGINT."""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
import torch
from training import train
from training.loop import JsonLinesLog, Progress
from training.synthetic import build_synthetic_dataset, SyntheticConfig

pytestmark = pytest.mark.slow  # interrupted training runs in subprocesses

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / 'training' / 'configs' / 'synthetic_tiny.yaml')
LOSSES = ('total', 'ce_ego', 'ce_exo', 'proto', 'pix')


@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
    """Build a small synthetic AGD20K-layout dataset."""
    root = tmp_path_factory.mktemp('synthetic')
    build_synthetic_dataset(root, SyntheticConfig(seed=0))
    return root


def arguments(root, out_dir):
    """Six steps over two epochs, a mid-epoch checkpoint every two steps."""
    values = {'data_root': root, 'out_dir': out_dir, 'epochs': 2, 'max_steps_per_epoch': 3,
              'batch_size': 2, 'eval_limit': 4, 'kmeans_iters': 10,
              'checkpoint_every_steps': 2, 'checkpoint_every_minutes': 0}
    return ['--config', CONFIG] + [f'{key}={value}' for key, value in values.items()]


def step_records(out_dir):
    lines = (Path(out_dir) / 'log.jsonl').read_text().splitlines()
    return [record for record in map(json.loads, lines) if record['event'] == 'step']


@pytest.fixture(scope='module')
def straight(synthetic_root, tmp_path_factory):
    """Return the step records of an uninterrupted run."""
    out_dir = tmp_path_factory.mktemp('straight')
    assert train.main(arguments(synthetic_root, out_dir)) == 0
    return step_records(out_dir)


def start_run(root, out_dir, extra=()):
    """Start a training process in its own process group (as a shell job would be)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    return subprocess.Popen([sys.executable, '-m', 'training.train']
                            + arguments(root, out_dir) + list(extra),
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_step(process, out_dir, step, timeout_s=300.0):
    """Poll the log until it records ``step``; the run must still be going."""
    log = Path(out_dir) / 'log.jsonl'
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, 'the run ended before it could be interrupted'
        if log.exists() and any(record['step'] >= step for record in step_records(out_dir)):
            return
        time.sleep(0.02)
    raise AssertionError(f'step {step} was not logged within {timeout_s} s')


def assert_same_steps(resumed, straight):
    assert [r['step'] for r in resumed] == [r['step'] for r in straight] == list(range(1, 7))
    for mine, theirs in zip(resumed, straight):
        for key in LOSSES:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), (key, mine)


def saved_step(out_dir):
    state = torch.load(Path(out_dir) / 'last.pt', weights_only=True)
    return state['progress']['global_step']


def test_sigkill_after_a_mid_epoch_checkpoint_loses_only_later_steps(synthetic_root, straight,
                                                                     tmp_path):
    out_dir = tmp_path / 'killed'
    process = start_run(synthetic_root, out_dir)
    try:
        wait_for_step(process, out_dir, 3)  # the checkpoint of step 2 is on disk
    finally:
        process.kill()
        process.communicate()
    # Checkpoints come every 2 steps and at each epoch end (3 steps per epoch). The kill is
    # sent once step 3 is logged; on a busy machine it may land after the epoch-end save.
    saved = saved_step(out_dir)
    assert saved in (2, 3)
    assert len(step_records(out_dir)) >= 3  # when saved == 2, the log ran ahead of it
    assert train.main(arguments(synthetic_root, out_dir) + ['--resume']) == 0
    assert_same_steps(step_records(out_dir), straight)  # step 3 logged once, not twice


@pytest.mark.parametrize('number', [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_save_and_say_how_to_resume(synthetic_root, straight, tmp_path,
                                                       number):
    out_dir = tmp_path / 'stopped'
    # Ctrl-C reaches the whole process group, data-loader workers included; SIGTERM (kill,
    # systemd, a scheduler) reaches the main process only.
    ctrl_c = number == signal.SIGINT
    process = start_run(synthetic_root, out_dir, ['workers=2'] if ctrl_c else [])
    try:
        wait_for_step(process, out_dir, 1)
        if ctrl_c:
            os.killpg(process.pid, number)
        else:
            process.send_signal(number)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 128 + number, stderr[-2000:]
    assert 'Traceback' not in stderr
    assert stderr.count('saving last.pt after this step') == 1  # not once per worker too
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith(f'stopped by {signal.Signals(number).name} at epoch 0 ')
    assert 'python -m training.train --config' in last_line and '--resume' in last_line
    logged = len(step_records(out_dir))
    assert saved_step(out_dir) == logged  # the step in flight finished and was saved
    assert 1 <= logged < 6
    assert train.main(arguments(synthetic_root, out_dir) + ['--resume']) == 0
    assert_same_steps(step_records(out_dir), straight)


def test_log_is_cut_back_to_the_checkpoint(tmp_path):
    log = JsonLinesLog(tmp_path / 'log.jsonl', enabled=True)
    log.write({'event': 'before_training'})
    for step in (1, 2, 3):
        log.write({'event': 'step', 'epoch': 0, 'step': step})
    log.write({'event': 'epoch', 'epoch': 0})
    log.write({'event': 'step', 'epoch': 1, 'step': 4})
    assert log.truncate_to(Progress(epoch=0, step_in_epoch=2, global_step=2)) == 3
    events = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [(r['event'], r.get('step')) for r in events] == [
        ('before_training', None), ('step', 1), ('step', 2)]
    assert log.truncate_to(Progress()) == 3  # a fresh start writes its own records
    assert log.path.read_text() == ''
