"""bench.multicam: configurations, verdicts and the ROS-free batch timing (tiny model)."""

from bench import multicam
import pytest


def test_layouts_of_one_node_and_of_separate_nodes():
    one, = multicam.layout(3, 'one_node')
    assert one['cameras'] == ['cam0', 'cam1', 'cam2']
    assert one['images'][2] == '/affordance/cam2/image'
    assert one['heatmaps'][0] == '/affordance/cam0/heatmap'
    separate = multicam.layout(2, 'separate_nodes')
    assert [node['namespace'] for node in separate] == ['/affordance0', '/affordance1']
    assert all(node['cameras'] == [] for node in separate)  # the default single camera


def row(cameras, mode, rss, rate):
    return {'cameras': cameras, 'mode': mode, 'peak_rss_mib': rss, 'heatmaps_per_s': rate}


def test_judge_compares_memory_with_one_camera_and_rate_with_separate_nodes():
    verdicts = multicam.judge([row(1, 'one_node', 100.0, 15.0), row(3, 'one_node', 120.0, 40.0),
                               row(3, 'separate_nodes', 300.0, 44.0)])
    assert verdicts['rss']['met'] and abs(verdicts['rss']['ratio_vs_one_camera'] - 1.2) < 1e-9
    assert abs(verdicts['rss']['separate_nodes_ratio'] - 3.0) < 1e-9
    assert not verdicts['throughput_3']['met']
    assert not multicam.judge([row(1, 'one_node', 100.0, 15.0),
                               row(3, 'one_node', 140.0, 45.0)])['rss']['met']


@pytest.mark.slow  # an end-to-end run: make test runs it, make test-fast does not
def test_pipeline_batches_time_every_batch_size(tiny_config_path, tmp_path):
    report = multicam.measure_pipeline_batches('onnxruntime', 'cpu', [1, 2], (64, 48),
                                               str(tiny_config_path), str(tmp_path), 1)
    assert [entry['batch'] for entry in report['rows']] == [1, 2]
    assert all(entry['batch_ms'] > 0 and entry['separate_runs_ms'] > 0
               for entry in report['rows'])
    assert 'batch' in multicam.format_pipeline_table(report)
