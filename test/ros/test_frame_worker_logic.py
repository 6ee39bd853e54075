"""The worker's logic without rclpy: plain stand-ins for messages, clock, logger and publishing.

These run in ``make test-fast``: the worker imports no ROS package, its publishing is handed in
by the node (``ros.publishing.publish_result``), so here a recorder takes its place.
"""

import time
from types import SimpleNamespace

from affordance_grounding.perception.frame_processor import FrameProcessor
from affordance_grounding.perception.latest_frames import LatestFrames
from affordance_grounding.perception.regions import Region
from affordance_grounding.perception.stamps import NS_PER_S
from affordance_grounding.ros.channels import CameraChannel, OutputPublishers, SharedState
from affordance_grounding.ros.frame_worker import FrameWorker
from affordance_grounding.ros.health import NodeHealth
from affordance_grounding.ros.pairing import PairedFrame
from affordance_grounding.ros.params import NodeConfig, to_output_settings
import numpy as np
import pytest

K_MATRIX = [40.0, 0.0, 20.0, 0.0, 40.0, 15.0, 0.0, 0.0, 1.0]


class Clock:
    """Wall time as the worker reads it from ``node.get_clock()``."""

    ros_time_is_active = False

    def now(self):
        return SimpleNamespace(nanoseconds=time.time_ns())


class Node:
    """The clock and logger the worker asks its node for; log lines are kept."""

    def __init__(self):
        self.clock, self.logged = Clock(), []

    def get_clock(self):
        return self.clock

    def get_logger(self):
        return SimpleNamespace(warning=self.logged.append, error=self.logged.append)


class Subscribers:
    """A publisher stand-in: the worker only asks how many subscribe."""

    def __init__(self, count=0):
        self.count = count

    def get_subscription_count(self):
        return self.count


class Recorder:
    """Takes the place of ``publish_result``: remembers (camera, message, result, label)."""

    def __init__(self):
        self.calls, self.detections = [], []

    def __call__(self, channel, msg, result, label, detections=None):
        self.calls.append((channel.name, msg, result, label))
        self.detections.append(detections)
        return {'publish': 0.0}


def stamp(age_s=0.0):
    ns = time.time_ns() - int(age_s * NS_PER_S)
    return SimpleNamespace(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def image(value=0, age_s=0.0, height=30, width=40, frame_id='cam'):
    """Return a duck-typed rgb8 ``sensor_msgs/Image`` (as a bag reader or rclpy gives it)."""
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp(age_s), frame_id=frame_id),
                           encoding='rgb8', height=height, width=width, step=width * 3,
                           is_bigendian=0, data=bytes([value]) * (height * width * 3))


def depth_image(msg, metres=1.0):
    """32FC1 depth with the colour frame's stamp and size."""
    values = np.full((msg.height, msg.width), metres, np.float32)
    return SimpleNamespace(header=msg.header, encoding='32FC1', height=msg.height,
                           width=msg.width, step=msg.width * 4, is_bigendian=0,
                           data=values.tobytes())


def make_worker(pipeline, cameras=('',), enable_3d=False, **config):
    health = NodeHealth()
    channels = {}
    for camera in cameras:
        publishers = OutputPublishers(Subscribers(), Subscribers(), Subscribers())
        if enable_3d:
            publishers.grasp_point = Subscribers()
        channels[camera] = CameraChannel(camera, publishers,
                                         health if not camera else NodeHealth())
    state = SharedState(NodeConfig(device='cpu', **config),
                        ('hold', pipeline.labels.index('hold')))
    recorder = Recorder()
    worker = FrameWorker(FrameProcessor(pipeline.backend), LatestFrames(), state, channels,
                         health, Node(), recorder)
    return worker, recorder


def test_worker_runs_cameras_as_one_batch_each_with_its_own_message(pipeline):
    worker, recorder = make_worker(pipeline, cameras=('head', 'wrist'))
    head, wrist = image(10, frame_id='head'), image(200, frame_id='wrist')
    worker.process_batch({'head': head, 'wrist': wrist})
    assert [(camera, msg) for camera, msg, _, _ in recorder.calls] == [('head', head),
                                                                       ('wrist', wrist)]
    expected = pipeline.run(np.full((30, 40, 3), 200, np.uint8),
                            pipeline.labels.index('hold'), to_output_settings(worker.state.config))
    np.testing.assert_allclose(recorder.calls[1][2].heatmap, expected.heatmap, atol=1e-6)
    assert worker.health.snapshot().batch_size == (2.0, 2.0)
    assert worker.channels['wrist'].health.output_rate.total == 1


def test_frames_per_inference_is_reported_with_named_cameras_only(pipeline):
    named, _ = make_worker(pipeline, cameras=('head',))
    named.process_batch({'head': image()})
    assert named.health.snapshot().batch_size == (1.0, 1.0)
    single, _ = make_worker(pipeline)
    single.process(image())
    assert single.health.snapshot().batch_size is None  # the default: no such key


def test_worker_skips_idle_stale_and_undecodable_frames_and_says_why(pipeline):
    worker, recorder = make_worker(pipeline, max_image_age_s=0.5)
    worker.process(image(age_s=2.0))
    broken = image()
    broken.data = broken.data[:10]
    worker.process(broken)
    junk = SimpleNamespace(header=image().header, format='jpeg', data=b'not an image')
    worker.process(junk)
    worker.state.command = ('', -1)
    worker.process(image())
    assert recorder.calls == []
    counts = worker.health.problems.counts
    assert (counts['bad_image'], counts['bad_compressed_image_unknown_format'],
            counts['no_action']) == (1, 1, 1)
    assert worker.health.stale_frames == 1
    logged = '\n'.join(worker._node.logged)
    assert '[stale_image] dropping an image' in logged and '[no_action]' in logged


@pytest.mark.parametrize('with_info, with_depth, problem', [
    (False, False, 'no_camera_info'), (True, False, 'no_depth'), (True, True, None)])
def test_worker_pairs_depth_by_stamp_and_reports_what_is_missing(pipeline, with_info,
                                                                 with_depth, problem):
    worker, recorder = make_worker(pipeline, cameras=('wrist',), enable_3d=True,
                                   mask_threshold=0.0)
    channel = worker.channels['wrist']
    msg = image(120)
    if with_info:
        channel.camera_info = SimpleNamespace(k=K_MATRIX)
    if with_depth:
        channel.depth.add(msg.header.stamp.sec * NS_PER_S + msg.header.stamp.nanosec,
                          depth_image(msg))
    worker.process_batch({'wrist': msg})
    (_, _, result, label), = recorder.calls
    assert label == 'hold'
    if problem is None:
        assert result.problems == [] and result.grasp is not None
        assert result.outputs_3d().point_xyz_m[2] == pytest.approx(1.0)
    else:
        assert [kind for kind, _ in result.problems] == [problem]
        assert any(f'[{problem}] camera wrist: ' in line for line in worker._node.logged)


@pytest.mark.parametrize('overlap', [True, False])
def test_worker_thread_processes_only_the_newest_frame_and_stops(pipeline, overlap):
    worker, recorder = make_worker(pipeline, max_rate_hz=0.0, max_image_age_s=0.0,
                                   worker_overlap=overlap)
    for _ in range(3):
        worker.mailbox.put(image())
    newest = image(50)
    worker.mailbox.put(newest)
    worker.start()
    assert worker.ready.wait(30.0)
    deadline = time.monotonic() + 30.0
    while not recorder.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert not worker.is_alive()
    assert [msg for _, msg, _, _ in recorder.calls] == [newest], worker._node.logged
    assert worker.mailbox.dropped == 3


def test_roi_mode_runs_the_whole_frame_until_the_first_roi_and_says_so(pipeline):
    worker, recorder = make_worker(pipeline, roi_source='roi')
    worker.process(image(90, height=48, width=64))
    (_, _, result, _), = recorder.calls
    assert result.regions == () and result.heatmap.shape == (48, 64)
    assert worker.health.problems.counts == {'no_roi_yet': 1}
    assert 'no ROI has arrived on roi yet' in worker._node.logged[0]


def test_roi_mode_runs_the_newest_roi_and_pastes_it_back(pipeline):
    worker, recorder = make_worker(pipeline, roi_source='roi', roi_margin=0.0)
    worker.channels[''].roi = Region(8, 4, 16, 16)
    worker.process(image(90, height=48, width=64))
    worker.process(image(90, height=48, width=64))  # the ROI applies until another arrives
    results = [result for _, _, result, _ in recorder.calls]
    assert [result.regions for result in results] == [(Region(8, 4, 16, 16),)] * 2
    assert results[0].heatmap[:, 30:].max() == 0.0 and results[0].problems == []
    worker.channels[''].roi = Region(0, 0, 0, 0)  # width 0: the whole frame
    worker.process(image(90, height=48, width=64))
    assert recorder.calls[-1][2].regions == (Region(0, 0, 64, 48),)


@pytest.mark.parametrize('roi', [Region(2 ** 32 - 5, 4, 16, 16), Region(500, 400, 20, 20),
                                 Region(4, 4, 10, 2 ** 32 - 1)])
def test_roi_mode_skips_a_frame_whose_roi_is_unusable_and_goes_on(pipeline, roi):
    worker, recorder = make_worker(pipeline, roi_source='roi')
    worker.channels[''].roi = roi
    worker.process(image(90, height=48, width=64))
    assert recorder.calls == []
    assert worker.health.problems.counts == {'bad_roi': 1}
    assert 'frame skipped: ROI' in worker._node.logged[0]
    worker.channels[''].roi = Region(8, 4, 16, 16)
    worker.process(image(90, height=48, width=64))
    assert len(recorder.calls) == 1


def detections_msg(msg, boxes):
    """Return a duck-typed vision_msgs 4 Detection2DArray with the image's header."""
    return SimpleNamespace(header=msg.header, detections=[
        SimpleNamespace(header=msg.header, id=str(index), results=[], bbox=SimpleNamespace(
            center=SimpleNamespace(position=SimpleNamespace(x=x + w / 2, y=y + h / 2),
                                   theta=0.0), size_x=w, size_y=h))
        for index, (x, y, w, h) in enumerate(boxes)])


def test_detections_with_no_box_publish_a_zero_heatmap_and_say_why(pipeline):
    worker, recorder = make_worker(pipeline, roi_source='detections')
    msg = image(90, height=48, width=64)
    boxes = detections_msg(msg, [])
    worker.process(PairedFrame(msg, boxes))
    (_, published, result, _), = recorder.calls
    assert published is msg and recorder.detections == [boxes]
    assert result.regions == () and result.heatmap.max() == 0.0 and result.mask.max() == 0
    assert worker.health.problems.counts == {'empty_detections': 1}


def test_hundreds_of_detections_run_the_largest_and_count_the_rest(pipeline):
    worker, recorder = make_worker(pipeline, roi_source='detections', max_regions=3)
    msg = image(90, height=48, width=64)
    boxes = [(index % 50, index % 30, 4 + index % 9, 4 + index % 7) for index in range(200)]
    boxes += [(-900, -900, 10, 10), (1e9, 5, 5, 5), (5, 5, float('nan'), 5)]
    worker.process(PairedFrame(msg, detections_msg(msg, boxes)))
    (_, _, result, _), = recorder.calls
    assert len(result.regions) == 3 and len(result.region_scores) == 3
    assert worker.health.problems.counts == {'too_many_regions': 1, 'bad_roi': 1}
    assert '197 more region(s) than max_regions=3' in '\n'.join(worker._node.logged)
