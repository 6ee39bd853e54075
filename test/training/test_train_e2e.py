"""Whole training pipeline on generated data: train, log, resume, evaluate, torchrun."""

import json
import os
from pathlib import Path
import subprocess
import sys

from affordance_grounding.model.checkpoint import load_grounder
import cv2
import pytest
from training import evaluate, train
from training.synthetic import build_synthetic_dataset, SyntheticConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / 'training' / 'configs' / 'synthetic_tiny.yaml')


@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
    """Build a small synthetic AGD20K-layout dataset."""
    root = tmp_path_factory.mktemp('synthetic')
    build_synthetic_dataset(root, SyntheticConfig(seed=0))
    return root


def overrides(root, out_dir, **extra):
    values = {'data_root': str(root), 'out_dir': str(out_dir),
              'model_config': str(REPO / 'config' / 'model_tiny.yaml'), **extra}
    return [f'{key}={value}' for key, value in values.items()]


def read_log(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / 'log.jsonl').read_text().splitlines()]


def epoch_means(records, key):
    epochs = sorted({r['epoch'] for r in records if r['event'] == 'step'})
    return [sum(r[key] for r in records if r['event'] == 'step' and r['epoch'] == e)
            / sum(1 for r in records if r['event'] == 'step' and r['epoch'] == e)
            for e in epochs]


@pytest.fixture(scope='module')
def trained(synthetic_root, tmp_path_factory):
    """Train the tiny model for four epochs; return the output folder."""
    out_dir = tmp_path_factory.mktemp('run')
    assert train.main(['--config', CONFIG] + overrides(synthetic_root, out_dir, epochs=4)) == 0
    return out_dir


@pytest.mark.slow  # trains for several epochs: make test, not make test-fast
def test_train_classification_and_total_loss_fall(trained):
    records = read_log(trained)
    ce = [a + b for a, b in zip(epoch_means(records, 'ce_ego'), epoch_means(records, 'ce_exo'))]
    total = epoch_means(records, 'total')
    assert ce[-1] < ce[0] - 0.5
    assert total[-1] < total[0]
    steps = [r for r in records if r['event'] == 'step']
    assert all(r['samples_per_s'] > 0 and {'proto', 'pix', 'part_fraction'} <= set(r)
               for r in steps)


@pytest.mark.slow  # trains for several epochs: make test, not make test-fast
def test_train_writes_best_bundle_metrics_and_contact_sheet(trained):
    report = json.loads((trained / 'metrics.json').read_text())
    assert set(report['maps']) == {'none', 'clip', 'clip_local_mean'}
    assert report['before_training']['clip']['num_images'] == report['report_images']
    epochs = [r for r in read_log(trained) if r['event'] == 'epoch']
    assert len(epochs) == 4 and any(r['improved'] for r in epochs)
    grounder = load_grounder(str(trained / 'best.pt'))
    assert len(grounder.labels) == 36
    sheet = cv2.imread(str(trained / 'contact_sheet.png'))
    assert sheet is not None and sheet.shape[1] == 5 * 160


@pytest.mark.slow  # trains for several epochs: make test, not make test-fast
def test_train_refuses_to_overwrite_a_run_without_resume(trained, synthetic_root, capsys):
    assert train.main(['--config', CONFIG] + overrides(synthetic_root, trained)) == 2
    assert '--resume' in capsys.readouterr().err


def test_train_unknown_config_key_is_an_error(capsys):
    assert train.main(['--config', CONFIG, 'epochz=3']) == 2
    assert 'epochz' in capsys.readouterr().err


@pytest.mark.slow  # trains for several epochs: make test, not make test-fast
def test_train_resume_takes_the_same_next_steps(synthetic_root, tmp_path):
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    common = {'epochs': 2, 'max_steps_per_epoch': 4}
    assert train.main(['--config', CONFIG] + overrides(synthetic_root, straight, **common)) == 0
    assert train.main(['--config', CONFIG, '--stop-after-steps', '6']
                      + overrides(synthetic_root, resumed, **common)) == 0
    assert not (resumed / 'metrics.json').exists()
    assert train.main(['--config', CONFIG, '--resume']
                      + overrides(synthetic_root, resumed, **common)) == 0
    expected = [r for r in read_log(straight) if r['event'] == 'step']
    got = [r for r in read_log(resumed) if r['event'] == 'step']
    assert [r['step'] for r in got] == [r['step'] for r in expected]
    for mine, theirs in zip(got, expected):
        for key in ('total', 'ce_ego', 'ce_exo', 'proto', 'pix'):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), (key, mine)


@pytest.mark.slow  # trains for several epochs: make test, not make test-fast
def test_evaluate_cli_scores_a_bundle(trained, synthetic_root, tmp_path, capsys):
    out_dir = tmp_path / 'eval'
    code = evaluate.main(['--checkpoint', str(trained / 'best.pt'), '--data-root',
                          str(synthetic_root), '--out-dir', str(out_dir), '--sheet-rows', '4'])
    assert code == 0
    metrics = json.loads((out_dir / 'metrics.json').read_text())
    assert metrics['clip']['num_images'] == 18
    assert 0.0 <= metrics['clip']['mean']['sim'] <= 1.0
    assert 'map 2' in capsys.readouterr().out
    assert cv2.imread(str(out_dir / 'contact_sheet.png')).shape[0] == 4 * 160


@pytest.mark.slow  # trains for several epochs: make test, not make test-fast
def test_evaluate_cli_bad_root_is_a_clear_error(trained, tmp_path, capsys):
    code = evaluate.main(['--checkpoint', str(trained / 'best.pt'), '--data-root',
                          str(tmp_path / 'nothing')])
    assert code == 2
    assert 'testset/egocentric' in capsys.readouterr().err


@pytest.mark.slow
def test_train_torchrun_two_processes_gloo(synthetic_root, tmp_path):
    out_dir = tmp_path / 'ddp'
    # --standalone: a rendezvous on localhost port 0, i.e. a free port chosen by the OS, so
    # parallel runs on one machine never collide on a fixed port.
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               '--nproc_per_node', '2', '-m', 'training.train', '--config', CONFIG]
    command += overrides(synthetic_root, out_dir, epochs=1, max_steps_per_epoch=3)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [r for r in read_log(out_dir) if r['event'] == 'step']
    assert len(steps) == 3  # only rank 0 logs; each rank ran 3 steps on its own shard
    assert (out_dir / 'best.pt').is_file() and (out_dir / 'metrics.json').is_file()
