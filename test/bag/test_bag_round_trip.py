"""affordance_bag end to end: synthetic bags in both storages, read back, known answer."""

from pathlib import Path

from affordance_grounding.bag.processing import BagJob, run_bag
from affordance_grounding.bag.reading import InputTopics
from affordance_grounding.geometry.grasp3d import compute_3d_outputs
from affordance_grounding.perception.image_codecs import image_msg_to_array
from affordance_grounding.perception.settings import OutputSettings
from affordance_grounding.perception.stamps import stamp_to_ns
from bench.bag_recording import (
    ACTION_TOPIC, COMPRESSED_TOPIC, depth_plane_mm, DEPTH_TOPIC, FRAME_PERIOD_NS, IMAGE_TOPIC,
    INFO_TOPIC, read_topic, RecordingSpec, START_NS, write_recording)
from harness.action_sequences import NODE_RULE_LABELS, REPLAYED_ACTIONS
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

SETTINGS = OutputSettings()


def run_job(tmp_path: Path, backend, spec: RecordingSpec, **job_fields):
    """Record ``spec``, process it with ``backend``; return (rgbs, summary, output path)."""
    source, output = tmp_path / 'recording', tmp_path / 'result'
    rgbs = write_recording(source, spec)
    job = BagJob(source, output, 'unused.onnx', progress=False, **job_fields)
    return rgbs, run_bag(job, backend=backend, log=lambda line: None), output


def expected_label(index: int, actions) -> str:
    """Return the label active for frame ``index`` given (frame, command) switches."""
    active = ''
    for start, text in actions:
        if start <= index:
            active = text
    return '_'.join(active.lower().split())


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_round_trip_matches_the_frame_pipeline(tmp_path, tiny_backend, known_answer,
                                                   storage):
    actions = ((0, 'hold'), (3, 'Cut with'))  # a switch inside a batch of 4, node spelling
    spec = RecordingSpec(frames=6, actions=actions, with_depth=True, storage=storage)
    rgbs, summary, output = run_job(
        tmp_path, tiny_backend, spec, storage=storage, batch_size=4,
        topics=InputTopics(IMAGE_TOPIC, ACTION_TOPIC, DEPTH_TOPIC, INFO_TOPIC))
    assert (summary.frames_in, summary.frames_out, dict(summary.skipped)) == (6, 6, {})
    assert summary.grasp_points + sum(summary.grasp_missing.values()) == 6
    heatmaps = read_topic(output, '/affordance/heatmap')
    masks = read_topic(output, '/affordance/grasp_mask')
    overlays = read_topic(output, '/affordance/overlay')
    points = dict(read_topic(output, '/affordance/grasp_point'))
    poses = dict(read_topic(output, '/affordance/grasp_pose'))
    clouds = dict(read_topic(output, '/affordance/affordance_cloud'))
    inputs = read_topic(output, IMAGE_TOPIC)  # copied through
    assert len(points) == summary.grasp_points > 0
    assert len(heatmaps) == len(masks) == len(overlays) == len(inputs) == 6
    labels = known_answer.labels
    for index, rgb in enumerate(rgbs):
        label = expected_label(index, actions)
        expected = known_answer.run(rgb, labels.index(label), SETTINGS, overlay_label=label)
        (time_ns, heatmap_msg), (_, mask_msg), (_, overlay_msg) = (
            heatmaps[index], masks[index], overlays[index])
        assert time_ns == START_NS + index * FRAME_PERIOD_NS == inputs[index][0]
        for msg in (heatmap_msg, mask_msg, overlay_msg):
            assert stamp_to_ns(msg.header.stamp) == stamp_to_ns(inputs[index][1].header.stamp)
            assert msg.header.frame_id == 'camera_color_optical_frame'
        heatmap, encoding = image_msg_to_array(heatmap_msg)
        assert encoding == '32FC1'
        np.testing.assert_allclose(heatmap, expected.heatmap, atol=1e-6)
        assert np.array_equal(image_msg_to_array(mask_msg)[0], expected.mask)
        overlay, encoding = image_msg_to_array(overlay_msg)
        assert encoding == 'bgr8' and np.array_equal(overlay, expected.overlay)
        height, width = rgb.shape[:2]
        k_matrix = [width, 0.0, width / 2.0, 0.0, width, height / 2.0, 0.0, 0.0, 1.0]
        result = compute_3d_outputs(depth_plane_mm(height, width), '16UC1', expected.mask,
                                    expected.heatmap, (height, width), k_matrix)
        if result.point.xyz_m is None:
            assert time_ns not in points
        else:
            got = points[time_ns].point
            np.testing.assert_allclose([got.x, got.y, got.z], result.point.xyz_m, atol=1e-6)
        if result.pose.pose is not None:
            got = poses[time_ns].pose
            np.testing.assert_allclose([got.position.x, got.position.y, got.position.z],
                                       result.pose.pose.position, atol=1e-6)
        if len(result.cloud.points):
            cloud = clouds[time_ns]
            np.testing.assert_allclose(cloud.data.view('<f4').reshape(-1, 4), result.cloud.xyzi,
                                       atol=1e-6)


def test_bag_output_has_the_definitions_players_need(tmp_path, tiny_backend):
    spec = RecordingSpec(frames=3, with_depth=True)
    _, _, output = run_job(tmp_path, tiny_backend, spec,
                           topics=InputTopics(None, None, DEPTH_TOPIC, INFO_TOPIC))
    with AnyReader([output]) as reader:  # no default typestore: definitions come from the bag
        types = {conn.topic: conn.msgtype for conn in reader.connections}
        assert all(conn.msgdef.data and conn.digest for conn in reader.connections)
        times = [time_ns for _, time_ns, _ in reader.messages()]
    assert types == {IMAGE_TOPIC: 'sensor_msgs/msg/Image', ACTION_TOPIC: 'std_msgs/msg/String',
                     DEPTH_TOPIC: 'sensor_msgs/msg/Image',
                     INFO_TOPIC: 'sensor_msgs/msg/CameraInfo',
                     '/affordance/heatmap': 'sensor_msgs/msg/Image',
                     '/affordance/grasp_mask': 'sensor_msgs/msg/Image',
                     '/affordance/overlay': 'sensor_msgs/msg/Image',
                     '/affordance/grasp_point': 'geometry_msgs/msg/PointStamped',
                     '/affordance/grasp_pose': 'geometry_msgs/msg/PoseStamped',
                     '/affordance/affordance_cloud': 'sensor_msgs/msg/PointCloud2',
                     '/affordance/markers': 'visualization_msgs/msg/MarkerArray'}
    assert times == sorted(times)
    assert (output / 'result.mcap').is_file() and (output / 'metadata.yaml').is_file()
    markers = read_topic(output, '/affordance/markers')
    assert markers and [m.text for m in markers[0][1].markers][:2] == ['', 'hold']
    assert [m.id for m in markers[0][1].markers] == [0, 1, 2, 3]  # point, label, pose pair


@pytest.mark.parametrize('compression, atol', [('.png', 0.0), ('.jpg', 0.1)])
def test_bag_compressed_images_match_the_raw_path(tmp_path, tiny_backend, known_answer,
                                                  compression, atol):
    spec = RecordingSpec(frames=3, compression=compression)
    rgbs, summary, output = run_job(tmp_path, tiny_backend, spec, storage='sqlite3',
                                    topics=InputTopics(COMPRESSED_TOPIC), overlap=False)
    assert summary.frames_out == 3
    hold = known_answer.labels.index('hold')
    for rgb, (_, msg) in zip(rgbs, read_topic(output, '/affordance/heatmap')):
        expected = known_answer.run(rgb, hold, SETTINGS).heatmap
        heatmap = image_msg_to_array(msg)[0]
        if atol == 0.0:
            np.testing.assert_allclose(heatmap, expected, atol=1e-6)
        else:
            assert np.abs(heatmap - expected).mean() < atol * 0.2
            assert np.abs(heatmap - expected).max() < atol * 3


def test_bag_counts_skipped_frames_by_reason(tmp_path, tiny_backend):
    # frames 0-1 before any action, 2-3 after an unknown action (still none valid), 4 a bad
    # image, 5 not even a message, 6-7 fine
    actions = ((2, 'fly'), (4, 'hold'))
    spec = RecordingSpec(frames=8, actions=actions, bad_frames=(4,), garbled_frames=(5,),
                         storage='sqlite3')
    warnings = []
    source, output = tmp_path / 'recording', tmp_path / 'result'
    write_recording(source, spec)
    summary = run_bag(BagJob(source, output, 'unused.onnx', progress=False, batch_size=2),
                      backend=tiny_backend, log=warnings.append)
    assert summary.frames_in == 8 and summary.frames_out == 2
    assert dict(summary.skipped) == {'no_action': 4, 'bad_image': 1, 'bad_message': 1}
    assert [time_ns for time_ns, _ in read_topic(output, '/affordance/heatmap')] == [
        START_NS + index * FRAME_PERIOD_NS for index in (6, 7)]
    with AnyReader([output]) as reader:  # nothing lost: the inputs are copied whole
        assert reader.topics[IMAGE_TOPIC].msgcount == 8
    assert any("'fly' ignored, the previous action stays" in line and 'hold' in line
               for line in warnings)


def replay_through_the_bag_tool(tmp_path, backend, known_answer, actions=REPLAYED_ACTIONS):
    """Run the bag tool over 9 frames with ``actions``; return the label found for each frame.

    A frame's label is the one whose known-answer heatmap equals the written one ('' when no
    heatmap was written).
    """
    rgbs, summary, output = run_job(tmp_path, backend, RecordingSpec(frames=9, actions=actions),
                                    batch_size=2)
    written = {time_ns: image_msg_to_array(msg)[0]
               for time_ns, msg in read_topic(output, '/affordance/heatmap')}
    labels = []
    for index, rgb in enumerate(rgbs):
        heatmap = written.get(START_NS + index * FRAME_PERIOD_NS)
        matches = [] if heatmap is None else [
            label for label in ('hold', 'pour') if np.allclose(heatmap, known_answer.run(
                rgb, known_answer.labels.index(label), SETTINGS).heatmap, atol=1e-6)]
        labels.append(matches[0] if len(matches) == 1 else '' if heatmap is None else '?')
    return tuple(labels), summary


def test_bag_keeps_the_previous_action_after_an_unknown_command(tmp_path, tiny_backend,
                                                                known_answer):
    labels, summary = replay_through_the_bag_tool(tmp_path, tiny_backend, known_answer)
    assert labels == NODE_RULE_LABELS  # test/ros/test_action_policy.py replays the node
    assert dict(summary.skipped) == {'no_action': 4}


def test_bag_fixed_action_and_copy_none(tmp_path, tiny_backend):
    spec = RecordingSpec(frames=3, actions=())
    _, summary, output = run_job(tmp_path, tiny_backend, spec, action='pour',
                                 copy_inputs='none', output_prefix='/offline/')
    assert summary.frames_out == 3
    with AnyReader([output]) as reader:
        assert sorted(reader.topics) == ['/offline/grasp_mask', '/offline/heatmap',
                                         '/offline/overlay']


class FailingBackend:
    """Delegates to a real backend but fails on the second batch."""

    def __init__(self, backend):
        self._backend, self.calls = backend, 0
        self.metadata, self.name, self.device = backend.metadata, backend.name, backend.device

    def describe(self):
        return 'failing test backend'

    def infer(self, batch):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError('device lost')
        return self._backend.infer(batch)


def test_bag_failure_leaves_no_partial_output(tmp_path, tiny_backend):
    source, output = tmp_path / 'recording', tmp_path / 'result'
    write_recording(source, RecordingSpec(frames=5))
    video = tmp_path / 'overlays.mp4'
    with pytest.raises(RuntimeError, match='device lost'):
        run_bag(BagJob(source, output, 'unused.onnx', progress=False, batch_size=2,
                       video_path=video, png_dir=tmp_path / 'png'),
                backend=FailingBackend(tiny_backend))
    assert sorted(path.name for path in tmp_path.iterdir()) == ['recording']


def test_bag_unreadable_depth_is_counted_and_the_frame_kept(tmp_path, tiny_backend):
    spec = RecordingSpec(frames=3, with_depth=True, garbled_depth=(1,))
    _, summary, output = run_job(tmp_path, tiny_backend, spec,
                                 topics=InputTopics(None, None, DEPTH_TOPIC, INFO_TOPIC))
    assert summary.frames_out == 3 and dict(summary.bad_inputs) == {DEPTH_TOPIC: 1}
    assert summary.grasp_missing['no_depth'] == 1
    point_times = [time_ns for time_ns, _ in read_topic(output, '/affordance/grasp_point')]
    assert START_NS + FRAME_PERIOD_NS not in point_times
    # That frame's markers delete the previous frame's point, label and pose (as the node does).
    markers = dict(read_topic(output, '/affordance/markers'))
    assert len(markers) == 3
    assert [(m.id, m.action) for m in markers[START_NS + FRAME_PERIOD_NS].markers] == [
        (marker_id, 2) for marker_id in range(4)]  # visualization_msgs/Marker.DELETE
    assert markers[START_NS].markers[0].action == 0  # ADD
    text = summary.describe(output, with_3d=True)
    assert f'unreadable messages (ignored): {DEPTH_TOPIC} 1' in text
