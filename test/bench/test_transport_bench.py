"""bench.transport's own logic: environments per setup, stage weighting, the table (no DDS)."""

import os

from bench.transport import (
    format_table, patched_environ, PROFILE, profile_environment, SETUPS)
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from harness.graph_client import collect_stage_means
import pytest

pytestmark = pytest.mark.ros  # bench.transport needs rclpy and the message wheels


class FakeClient:
    def __init__(self, arrays):
        self.arrays = arrays

    def messages(self, topic):
        assert topic == '/diagnostics'
        return self.arrays


def diagnostics(name, **values):
    return DiagnosticArray(status=[DiagnosticStatus(
        name=name, values=[KeyValue(key=key.replace('_', ' '), value=str(value))
                           for key, value in values.items()])])


def test_profile_environment_gives_or_removes_both_variables(monkeypatch):
    assert PROFILE.is_file()
    monkeypatch.setenv('FASTRTPS_DEFAULT_PROFILES_FILE', '/robot.xml')
    with patched_environ(profile_environment(False)):
        assert 'FASTRTPS_DEFAULT_PROFILES_FILE' not in os.environ
        assert 'FASTDDS_DEFAULT_PROFILES_FILE' not in os.environ
    assert os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] == '/robot.xml'  # restored
    with patched_environ(profile_environment(True)):
        assert os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] == str(PROFILE)
        assert os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] == str(PROFILE)
    assert 'FASTDDS_DEFAULT_PROFILES_FILE' not in os.environ


def test_stage_means_weight_periods_by_frames_and_skip_other_nodes():
    name = 'affordance_grounding: inference'
    arrays = [
        diagnostics(name, frames_published=12, **{'inference mean (ms)': 10.0}),  # +2 frames
        diagnostics('camera: driver', frames_published=1000, **{'inference mean (ms)': 99.0}),
        diagnostics(name, frames_published=18, **{'inference mean (ms)': 20.0}),  # +6 frames
        diagnostics(name, frames_published=18, **{'inference mean (ms)': 50.0}),  # no frames
    ]
    means = collect_stage_means(FakeClient(arrays), published_before=10)
    assert means == {'inference': (2 * 10.0 + 6 * 20.0) / 8}


def test_format_table_lists_every_row():
    row = {'setup': 'both_sides', 'size': '640x480', 'sent': 360, 'received': 360, 'lost': 0,
           'delivered': 1.0, 'heatmap_hz': 27.6, 'rate_vs_allowed': 0.92, 'meets_target': True,
           'node_frame_ms': 21.8, 'stage_mean_ms': {'inference': 15.8}}
    report = {'model': 'm', 'heatmap_resolution': 'input', 'rate_hz': 30.0, 'seconds': 12.0,
              'pure_inference_ms': [32.0, 24.3], 'model_hz': 35.7, 'allowed_hz': 30.0,
              'load_average_before': [8.0], 'load_average_after': [11.8],
              'rows': [dict(row, setup=setup) for setup in SETUPS]}
    lines = format_table(report).splitlines()
    assert len(lines) == 2 + len(SETUPS)
    assert '32.0 / 24.3 ms' in lines[0] and 'allowed 30.0 Hz' in lines[0]
    assert lines[-1].split()[:6] == ['both_sides', '640x480', '360', '360', '0', '100.0%']
    assert 'yes' in lines[-1] and 'inference 15.8' in lines[-1]
