"""FrameWorker.process without DDS: fakes for the publishers and the node."""

import time

from affordance_grounding.ros.conversions import array_to_image_msg
from affordance_grounding.ros.frame_worker import FrameWorker, OutputPublishers, SharedState
from affordance_grounding.ros.health import NodeHealth
from affordance_grounding.ros.params import NodeConfig
from affordance_grounding.runtime.backends import OnnxRuntimeBackend
from affordance_grounding.runtime.frame_pipeline import FramePipeline
from affordance_grounding.runtime.latest_frames import LatestFrames
import numpy as np
import pytest
import rclpy
from rclpy.clock import Clock, ClockType
from std_msgs.msg import Header

pytestmark = pytest.mark.ros


class FakePublisher:
    def __init__(self, subscribers=1):
        self.sent = []
        self.subscribers = subscribers

    def publish(self, msg):
        self.sent.append(msg)

    def get_subscription_count(self):
        return self.subscribers


class FakeNode:
    def __init__(self):
        self.clock = Clock(clock_type=ClockType.SYSTEM_TIME)
        self.logged = []

    def get_clock(self):
        return self.clock

    def get_logger(self):
        return self

    def warning(self, text):
        self.logged.append(text)

    error = warning


@pytest.fixture(scope='module')
def pipeline(tiny_onnx):
    return FramePipeline(OnnxRuntimeBackend(str(tiny_onnx), 'cpu').load())


def make_worker(pipeline, overlay_subscribers=0, **config):
    publishers = OutputPublishers(FakePublisher(), FakePublisher(),
                                  FakePublisher(overlay_subscribers))
    state = SharedState(NodeConfig(device='cpu', **config), ('hold', pipeline.labels.index(
        'hold')))
    node = FakeNode()
    return FrameWorker(pipeline, LatestFrames(), state, publishers, NodeHealth(), node), node


def image_msg(node, age_s=0.0):
    header = Header(frame_id='cam')
    header.stamp = rclpy.time.Time(
        nanoseconds=node.clock.now().nanoseconds - int(age_s * 1e9)).to_msg()
    return array_to_image_msg(np.zeros((30, 40, 3), np.uint8), 'rgb8', header)


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
