"""bench.bag: a tiny end-to-end run of the offline-vs-live benchmark."""

import json

from bench import bag
import pytest


@pytest.mark.slow  # an end-to-end run: make test runs it, make test-fast does not
def test_bench_bag_tiny_run_reports_every_mode(tmp_path, capsys):
    out = tmp_path / 'bag.json'
    assert bag.main(['--config', 'config/model_tiny.yaml', '--frames', '4', '--rounds', '1',
                     '--size', '64x48', '--batches', '1,2', '--compression', '.png',
                     '--cache-dir', str(tmp_path / 'cache'), '--out', str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {row['mode']: row for row in report['rows']}
    assert list(rows) == ['live', 'live, main thread', 'inference only, batch 1',
                          'inference only, batch 2', 'offline batch 1', 'offline batch 2',
                          'offline batch 2, no overlap']
    assert rows['live']['vs_live'] == 1.0
    for row in rows.values():
        assert row['frames_per_s'] > 0 and len(row['seconds']) == 1
        assert abs(row['ms_per_frame'] * row['frames_per_s'] - 1e3) < 1e-6
    assert report['compression'] == '.png' and report['frame_size'] == [64, 48]
    table = capsys.readouterr().out
    assert 'offline batch 2, no overlap' in table and 'vs live' in table
