"""FrameWorker with several cameras, without DDS: one batch, own headers, own actions."""

from affordance_grounding.perception.frame_pipeline import FramePipeline
from affordance_grounding.perception.frame_processor import FrameProcessor
from affordance_grounding.perception.latest_frames import LatestFrames
from affordance_grounding.perception.settings import OutputSettings
from affordance_grounding.ros.channels import CameraChannel, OutputPublishers, SharedState
from affordance_grounding.ros.frame_worker import FrameWorker
from affordance_grounding.ros.health import NodeHealth
from affordance_grounding.ros.params import NodeConfig
from affordance_grounding.ros.publishing import publish_result
from harness.fakes import FakeNode, FakePublisher, image_msg
import numpy as np
import pytest

pytestmark = pytest.mark.ros


class CountingProcessor(FrameProcessor):
    """A FrameProcessor that records the size of every batch it runs."""

    def __init__(self, inner: FramePipeline):
        super().__init__(inner.backend)
        self.batch_sizes = []

    def infer(self, frames):  # the first half of every batch, with or without the overlap
        self.batch_sizes.append(len(frames))
        return super().infer(frames)


def make_channels(cameras):
    return {camera: CameraChannel(camera, OutputPublishers(
        FakePublisher(), FakePublisher(), FakePublisher(0)), NodeHealth()) for camera in cameras}


def make_worker(pipeline, cameras=('head', 'wrist'), **config):  # noqa: F811
    counting = CountingProcessor(pipeline)
    state = SharedState(NodeConfig(device='cpu', cameras=tuple(cameras), **config),
                        ('hold', pipeline.labels.index('hold')))
    health = NodeHealth()
    worker = FrameWorker(counting, LatestFrames(), state, make_channels(cameras), health,
                         FakeNode(), publish_result)
    return worker, counting


def frame(node, value, age_s=0.0, frame_id='cam'):
    msg = image_msg(node, age_s)
    msg.header.frame_id = frame_id
    msg.data = bytes([value]) * len(msg.data)
    return msg


def test_two_cameras_run_as_one_batch_and_keep_their_own_headers(pipeline):  # noqa: F811
    worker, counting = make_worker(pipeline)
    node = worker._node
    head = frame(node, 10, frame_id='head_optical')
    wrist = frame(node, 200, frame_id='wrist_optical')
    worker.process_batch({'head': head, 'wrist': wrist})
    assert counting.batch_sizes == [2]
    for camera, msg in (('head', head), ('wrist', wrist)):
        sent = worker.channels[camera].publishers.heatmap.sent
        assert [m.header for m in sent] == [msg.header]
        assert worker.channels[camera].health.output_rate.total == 1
    assert worker.health.output_rate.total == 2  # the node counts every camera
    assert worker.health.snapshot().batch_size == (2.0, 2.0)
    hold = pipeline.labels.index('hold')
    expected = pipeline.run(np.full((30, 40, 3), 200, np.uint8), hold, OutputSettings())
    heatmap = worker.channels['wrist'].publishers.heatmap.sent[0]
    np.testing.assert_allclose(np.frombuffer(bytes(heatmap.data), np.float32).reshape(30, 40),
                               expected.heatmap, atol=1e-5)


def test_a_camera_own_action_selects_its_row_only(pipeline):  # noqa: F811
    worker, _ = make_worker(pipeline)
    node = worker._node
    pour = pipeline.labels.index('pour')
    worker.channels['wrist'].command = ('pour', pour)
    same = np.full((30, 40, 3), 90, np.uint8)
    worker.process_batch({'head': frame(node, 90), 'wrist': frame(node, 90)})
    maps = {camera: np.frombuffer(bytes(channel.publishers.heatmap.sent[0].data), np.float32)
            for camera, channel in worker.channels.items()}
    hold = pipeline.labels.index('hold')
    np.testing.assert_allclose(maps['head'], pipeline.run(same, hold, OutputSettings())
                               .heatmap.ravel(), atol=1e-5)
    np.testing.assert_allclose(maps['wrist'], pipeline.run(same, pour, OutputSettings())
                               .heatmap.ravel(), atol=1e-5)


def test_a_stale_camera_is_left_out_of_the_batch_not_the_others(pipeline):  # noqa: F811
    worker, counting = make_worker(pipeline, max_image_age_s=0.5)
    node = worker._node
    worker.process_batch({'head': frame(node, 10, age_s=2.0), 'wrist': frame(node, 20)})
    assert counting.batch_sizes == [1]
    assert worker.channels['head'].health.stale_frames == 1
    assert not worker.channels['head'].publishers.heatmap.sent
    assert len(worker.channels['wrist'].publishers.heatmap.sent) == 1
    assert any('camera head: dropping an image' in line for line in node.logged)
