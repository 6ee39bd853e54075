"""Tests for training.ablation: row aggregation over seeds and the table format."""

import pytest
from training import ablation
from training.ablation_sheet import pick_rows


def _run(kld, sim, nss, calibrated_nss):
    """Build a metrics.json-shaped record with map 1 and map 2 means."""
    return {'metrics': {'maps': {'none': {'mean': {'kld': kld, 'sim': sim, 'nss': nss}},
                                 'clip': {'mean': {'kld': kld - 1, 'sim': sim + 0.1,
                                                   'nss': calibrated_nss}}}},
            'wall_s': 1.0}


def test_summarise_gives_mean_and_sample_std_per_row_and_map():
    """Rows read map 1 or map 2 of their configuration; std is the sample (ddof=1) one."""
    runs = {'ce_only': {0: _run(3.0, 0.1, 0.0, 1.0), 1: _run(2.0, 0.3, 1.0, 2.0)},
            'full': {0: _run(1.0, 0.5, 2.0, 4.0), 1: _run(1.0, 0.5, 2.0, 6.0),
                     2: _run(1.0, 0.5, 2.0, 5.0)}}
    table = {row['row']: row for row in ablation.summarise(runs)}
    assert list(table) == ['a: CE only', 'b: CE + calibration', 'h: + pixel loss',
                           'i: + test-time calibration']
    assert table['a: CE only']['kld']['mean'] == pytest.approx(2.5)
    assert table['a: CE only']['kld']['std'] == pytest.approx(0.5 ** 0.5)
    assert table['b: CE + calibration']['nss']['mean'] == pytest.approx(1.5)
    assert table['h: + pixel loss']['nss']['std'] == pytest.approx(0.0)
    assert table['i: + test-time calibration']['nss']['mean'] == pytest.approx(5.0)
    assert table['i: + test-time calibration']['nss']['std'] == pytest.approx(1.0)
    assert table['i: + test-time calibration']['seeds'] == [0, 1, 2]
    text = ablation.format_rows(ablation.summarise(runs))
    assert '| i: + test-time calibration | 0.000 ± 0.000 | 0.600 ± 0.000 | 5.000 ± 1.000 |' in text


def test_rows_follow_the_papers_table_order():
    """Rows a, b, c, f, h, i: each adds one component to the previous training or map."""
    letters = [title.split(':')[0] for title, _, _ in ablation.ROWS]
    assert letters == ['a', 'b', 'c', 'f', 'h', 'i']
    assert [(config, map_name) for _, config, map_name in ablation.ROWS] == [
        ('ce_only', 'none'), ('ce_only', 'clip'), ('proto_object', 'none'),
        ('proto_part', 'none'), ('full', 'none'), ('full', 'clip')]


def test_training_configs_switch_the_papers_losses():
    """Each configuration sets exactly the switches of its row."""
    assert 'use_pixel_loss=false' in ablation.TRAINING_CONFIGS['ce_only']
    assert 'use_proto_loss=false' in ablation.TRAINING_CONFIGS['ce_only']
    assert 'part_prototypes=false' in ablation.TRAINING_CONFIGS['proto_object']
    assert 'part_prototypes=true' in ablation.TRAINING_CONFIGS['proto_part']
    assert 'use_pixel_loss=true' in ablation.TRAINING_CONFIGS['full']
    assert [row[1:] for row in ablation.ROWS][-2:] == [('full', 'none'), ('full', 'clip')]


def test_pick_rows_spreads_over_the_test_items():
    """Indices are evenly spaced and capped at the requested count."""
    assert pick_rows(['a'] * 90, 9) == list(range(0, 90, 10))
    assert pick_rows(['a'] * 5, 9) == [0, 1, 2, 3, 4]


def test_ensure_dataset_builds_both_settings_once(tmp_path):
    """The data root gets Seen and Unseen; a second call with equal settings rebuilds nothing."""
    from training.synthetic import SyntheticConfig

    config = SyntheticConfig(train_per_object=1, test_per_object=1, image_size=64)
    ablation.ensure_dataset(tmp_path, config)
    assert (tmp_path / 'Seen' / 'synthetic_meta.json').is_file()
    meta = tmp_path / 'Unseen' / 'synthetic_meta.json'
    before = meta.stat().st_mtime_ns
    ablation.ensure_dataset(tmp_path, config)
    assert meta.stat().st_mtime_ns == before
    assert list((tmp_path / 'Unseen' / 'testset' / 'GT' / 'cut_with').iterdir())[0].name == (
        'cleaver')


def test_compare_paired_differences_per_seed():
    """The paired t is the mean per-seed difference over its standard error."""
    runs = {'proto_object': {0: _run(2.0, 0.1, 1.0, 0), 1: _run(3.0, 0.1, 1.0, 0),
                             2: _run(2.5, 0.1, 1.0, 0)},
            'proto_part': {0: _run(1.9, 0.1, 1.0, 0), 1: _run(2.7, 0.1, 1.0, 0),
                           2: _run(2.5, 0.1, 1.0, 0), 3: _run(0.0, 0.1, 1.0, 0)}}
    paired = ablation.compare_paired(runs, 'proto_object', 'proto_part')
    assert paired['seeds'] == [0, 1, 2]  # seed 3 has no partner
    kld = paired['kld']
    assert kld['paired_diff_mean'] == pytest.approx(-0.4 / 3)
    diffs = [-0.1, -0.3, 0.0]
    sd = (sum((d + 0.4 / 3) ** 2 for d in diffs) / 2) ** 0.5
    assert kld['paired_diff_std'] == pytest.approx(sd)
    assert kld['paired_t'] == pytest.approx((-0.4 / 3) / (sd / 3 ** 0.5))
    assert kld['after_lower'] == 2
