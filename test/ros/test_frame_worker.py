"""FrameWorker.process without DDS: fakes for the publishers and the node."""

import time

from affordance_grounding.perception.latest_frames import LatestFrames
from affordance_grounding.ros.frame_worker import FrameWorker, OutputPublishers, SharedState
from affordance_grounding.ros.health import NodeHealth
from affordance_grounding.ros.params import NodeConfig
from harness.fakes import FakeNode, FakePublisher, image_msg
import pytest

pytestmark = pytest.mark.ros


def make_worker(pipeline, overlay_subscribers=0, **config):
    publishers = OutputPublishers(FakePublisher(), FakePublisher(),
                                  FakePublisher(overlay_subscribers))
    state = SharedState(NodeConfig(device='cpu', **config), ('hold', pipeline.labels.index(
        'hold')))
    node = FakeNode()
    return FrameWorker(pipeline, LatestFrames(), state, publishers, NodeHealth(), node), node


def test_frame_worker_renders_the_overlay_only_for_subscribers(pipeline):
    for subscribers, expected in ((0, 0), (2, 1)):
        worker, node = make_worker(pipeline, overlay_subscribers=subscribers)
        worker.process(image_msg(node))
        assert len(worker.publishers.heatmap.sent) == 1
        assert len(worker.publishers.overlay.sent) == expected
        timings = worker.health.snapshot().stage_ms
        assert set(timings) == {'conversion', 'preprocess', 'inference', 'postprocess',
                                'publish'}


def test_frame_worker_drops_stale_frames_and_idles_without_action(pipeline):
    worker, node = make_worker(pipeline, max_image_age_s=0.5)
    worker.process(image_msg(node, age_s=2.0))
    assert worker.health.stale_frames == 1 and not worker.publishers.heatmap.sent
    worker.state.command = ('', -1)
    worker.process(image_msg(node))
    assert worker.health.problems.counts.get('no_action') == 1
    assert not worker.publishers.heatmap.sent
    assert any('[stale_image]' in line for line in node.logged)
    assert any('[no_action]' in line for line in node.logged)


def test_frame_worker_thread_processes_the_newest_frame_and_stops(pipeline):
    worker, node = make_worker(pipeline, max_rate_hz=0.0)
    for _ in range(3):
        worker.mailbox.put(image_msg(node))
    newest = image_msg(node)
    worker.mailbox.put(newest)
    worker.start()
    assert worker.ready.wait(30.0)
    deadline = time.monotonic() + 30.0
    while not worker.publishers.heatmap.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert not worker.is_alive()
    assert [m.header.stamp for m in worker.publishers.heatmap.sent] == [newest.header.stamp]
    assert worker.mailbox.dropped == 3
