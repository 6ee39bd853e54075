"""The demo end to end with one epoch and one frame per scene, plus its step cache."""

import json

from demo import pipeline
from demo.run import main
import pytest


def test_step_cache_key_changes_with_inputs(tmp_path):
    source = tmp_path / 'input.txt'
    source.write_text('a')
    key = pipeline.compute_key([source], {'epochs': 1})
    output = tmp_path / 'out.bin'
    output.write_text('x')
    assert not pipeline.is_current(output, key)
    pipeline.mark_current(output, key)
    assert pipeline.is_current(output, key)
    assert pipeline.compute_key([source], {'epochs': 2}) != key
    source.write_text('b')
    assert pipeline.compute_key([source], {'epochs': 1}) != key


@pytest.mark.ros
@pytest.mark.slow
def test_demo_writes_overlays_masks_sheet_and_latency(tmp_path):
    out = tmp_path / 'demo'
    assert main(['--out', str(out), '--epochs', '1', '--frames-per-scene', '2']) == 0
    summary = json.loads((out / 'latency.json').read_text())
    assert summary['frames'] == len(summary['scenes'])  # the first frame of each is warm-up
    assert any(name.startswith('coffee') for name in summary['scenes'])  # a real photo
    assert summary['stamp_to_heatmap_ms']['median'] > 0.0
    assert summary['node_stage_mean_ms']['inference'] > 0.0
    assert 0.0 < summary['share_outside_model'] < 1.0
    for scene in summary['scenes']:
        for kind in ('overlay', 'mask', 'heatmap'):
            assert (out / 'scenes' / f'{scene}_{kind}.png').stat().st_size > 0
    assert (out / 'contact_sheet.png').stat().st_size > 10_000
    summary_again = main(['--out', str(out), '--epochs', '1', '--frames-per-scene', '2'])
    assert summary_again == 0
    reused = json.loads((out / 'latency.json').read_text())['model']['reused']
    assert reused == ['data', 'training', 'export']
