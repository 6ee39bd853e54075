"""Node health bookkeeping: rates, per-kind throttling, snapshots and the summary level."""

from affordance_grounding.ros.health import (
    HealthSnapshot, NodeHealth, ProblemLog, RateMeter, summarise_health)
import pytest


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_meter_counts_events_per_second_in_its_window():
    clock = FakeClock()
    meter = RateMeter(window_s=5.0, clock=clock)
    for _ in range(11):
        meter.tick()
        clock.now += 0.1
    assert meter.rate_hz() == pytest.approx(10.0)
    clock.now += 10.0
    assert meter.rate_hz() == 0.0 and meter.total == 11


def test_rate_meter_is_exact_before_its_window_fills_and_falls_when_events_stop():
    clock = FakeClock()
    meter = RateMeter(window_s=5.0, clock=clock)
    for _ in range(4):  # 0.3 s of a 10 Hz stream: the rate is already right
        meter.tick()
        clock.now += 0.1
    assert meter.rate_hz() == pytest.approx(10.0)
    for _ in range(50):
        meter.tick()
        clock.now += 0.1
    assert meter.rate_hz() == pytest.approx(10.0)
    rates = []
    for _ in range(6):  # the stream stopped: every second the rate must be lower
        clock.now += 1.0
        rates.append(meter.rate_hz())
    assert all(later < earlier for earlier, later in zip(rates, rates[1:5]))
    assert 0.0 < rates[0] < 10.0 and rates[-1] == 0.0


def test_problem_log_throttles_each_kind_separately():
    clock = FakeClock()
    problems = ProblemLog(period_s=5.0, clock=clock)
    assert problems.report('bad_image', 'a') is True
    assert problems.report('bad_image', 'b') is False
    assert problems.report('bad_action', 'c') is True  # another kind is not hidden
    clock.now += 5.0
    assert problems.report('bad_image', 'd') is True
    assert problems.counts == {'bad_image': 3, 'bad_action': 1}
    assert problems.last_message == 'd'


def test_node_health_snapshot_reports_stage_means_and_resets_the_period():
    health = NodeHealth(clock=FakeClock())
    health.count_output({'inference': 0.010}, delay_s=0.030)
    health.count_output({'inference': 0.030}, delay_s=0.050)
    health.count_stale()
    health.count_lost(4)
    snapshot = health.snapshot()
    assert snapshot.stage_ms['inference'] == pytest.approx((20.0, 30.0))
    assert snapshot.delay_ms == pytest.approx((40.0, 50.0))
    assert (snapshot.frames_published, snapshot.stale_frames, snapshot.lost_in_transport) == (
        2, 1, 4)
    values = dict(snapshot.to_key_values({'backend': 'x'}))
    assert values['inference mean (ms)'] == '20.00' and values['backend'] == 'x'
    assert health.snapshot().stage_ms == {}  # per-period statistics restarted


def test_frame_age_grows_after_frames_stop():
    clock = FakeClock()
    health = NodeHealth(clock=clock)
    assert health.snapshot().frame_age_s is None
    health.note_frame_age(0.002, looks_recorded=False)
    assert health.snapshot().frame_age_s == pytest.approx(0.002)
    clock.now += 14.0
    values = dict(health.snapshot().to_key_values())
    assert values['newest frame age (s)'] == '14.002'


def test_a_period_without_frames_says_so():
    clock = FakeClock()
    health = NodeHealth(clock=clock)
    health.count_batch(2)  # named cameras report frames per inference
    health.count_output({'inference': 0.010}, delay_s=0.030)
    busy = dict(health.snapshot().to_key_values())
    assert (busy['delay from stamp mean (ms)'], busy['frames per inference max']) == ('30.0', '2')
    clock.now += 1.0
    empty = dict(health.snapshot().to_key_values())
    for key in ('delay from stamp mean (ms)', 'delay from stamp max (ms)',
                'frames per inference mean', 'frames per inference max'):
        assert empty[key] == 'none: no frames this period', key
    assert 'inference mean (ms)' not in empty  # stages appear when they ran
    single = dict(NodeHealth(clock=clock).snapshot().to_key_values())
    assert 'frames per inference mean' not in single  # the default single camera


@pytest.mark.parametrize('phase, failure, action, output_hz, expected', [
    ('unconfigured', 'configure failed: x', '', 0.0, ('error', 'configure failed: x')),
    ('inactive', '', 'hold', 0.0, ('warn', 'node is inactive')),
    ('active', '', '', 0.0, ('ok', 'idle: no action set')),
    ('active', '', 'hold', 3.0, ('warn', 'output 3.0 Hz below expected_rate_hz 10.0')),
    ('active', '', 'hold', 12.0, ('ok', '12.0 Hz')),
])
def test_summarise_health_levels(phase, failure, action, output_hz, expected):
    snapshot = HealthSnapshot(input_hz=30.0, output_hz=output_hz, images_received=1,
                              frames_published=1, stale_frames=0, lost_in_transport=0,
                              stage_ms={}, delay_ms=(0.0, 0.0), problems={})
    assert summarise_health(snapshot, phase, failure, action, 10.0) == expected
