"""affordance_bag with a detector's boxes (--detections-topic) and one fixed box (--roi)."""

from collections import Counter
import math
from pathlib import Path
import subprocess
import sys
from test.bag.test_bag_cli import assert_one_line_error, NO_ROS_RUNNER, REPO, run_cli

from affordance_grounding.bag.job import BagSummary
from affordance_grounding.bag.processing import BagJob, run_bag
from affordance_grounding.bag.reading import InputTopics
from affordance_grounding.perception.detections import detection_regions
from affordance_grounding.perception.frame_processor import FrameInput, FrameProcessor
from affordance_grounding.perception.regions import parse_box
from affordance_grounding.perception.settings import OutputSettings, RegionSettings
from affordance_grounding.perception.stamps import stamp_to_ns
from bench.bag_recording import (
    DETECTIONS_TOPIC, IMAGE_TOPIC, read_topic, RecordingSpec, write_recording)
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

SETTINGS = OutputSettings()
DETECTIONS_OUT = '/affordance/affordance_detections'
MANY = [(7 * i % 110, 5 * i % 80, 12 + i % 9, 10 + i % 7, 'thing', 0.5) for i in range(300)]
# Frame -> boxes (x, y, w, h, class, score): two objects; none; bad boxes beside a good one
# (wholly outside, negative size, NaN); hundreds; stamps that never match (4); no message (5).
DETECTIONS = {0: [(8, 10, 40, 30, 'cup', 0.9), (60, 20, 50, 60, 'knife', 0.8)], 1: [],
              2: [(-900, -900, 10, 10, 'far', 0.3), (20, 20, -5, 10, 'neg', 0.2),
                  (math.nan, 5, 10, 10, 'nan', 0.1), (30, 30, 40, 40, 'box', 0.7)],
              3: MANY, 4: [(8, 10, 40, 30, 'late', 0.9)]}
SPEC = RecordingSpec(frames=6, detections=DETECTIONS, detection_stamp_shift_ns={4: 400_000_000})


@pytest.fixture(scope='module')
def detector_bag(tmp_path_factory):
    """Return (bag path, RGB frames) of the detector recording above."""
    path = tmp_path_factory.mktemp('detections') / 'recording'
    return path, write_recording(path, SPEC)


def run_detections(tmp_path: Path, backend, source: Path, **job_fields):
    """Process ``source`` with ``backend``; return (summary, output path)."""
    output = tmp_path / 'result'
    job = BagJob(source, output, 'unused.onnx', progress=False, **job_fields)
    return run_bag(job, backend=backend, log=lambda line: None), output


def frame_job(backend, rgb, boxes, zero_size_is_whole_frame=False, regions=RegionSettings()):
    """Run the frame job directly on one frame with ``boxes`` (the known answer)."""
    label = 'hold'
    processor = FrameProcessor(backend, regions)
    return processor.process([FrameInput(
        rgb, label, processor.labels.index(label), boxes=boxes,
        zero_size_is_whole_frame=zero_size_is_whole_frame)], SETTINGS)[0]


def topics_of(path: Path):
    """Topic names of a bag."""
    with AnyReader([path]) as reader:
        return set(reader.topics)


def header_of(msg):
    """(stamp, frame_id): messages of two readers are of distinct classes."""
    return stamp_to_ns(msg.header.stamp), msg.header.frame_id


def box_of(detection):
    """(centre x, centre y, width, height) of a Detection2D."""
    bbox = detection.bbox
    return bbox.center.position.x, bbox.center.position.y, bbox.size_x, bbox.size_y


def test_detections_bag_equals_the_frame_job_and_ranks_best_first(tmp_path, tiny_backend,
                                                                  detector_bag):
    source, rgbs = detector_bag
    topics = InputTopics(IMAGE_TOPIC, None, None, None, DETECTIONS_TOPIC)
    summary, output = run_detections(tmp_path, tiny_backend, source, batch_size=3,
                                     topics=topics)
    assert (summary.frames_in, summary.frames_out) == (6, 4)
    assert dict(summary.skipped) == {'no_detections': 2}  # frame 4 (stamp), frame 5 (none)
    assert dict(summary.region_problems) == {'empty_detections': 1, 'bad_roi': 1,
                                             'too_many_regions': 1}
    assert summary.regions_run == 2 + 0 + 1 + 8
    heatmaps = read_topic(output, '/affordance/heatmap')
    ranked = read_topic(output, DETECTIONS_OUT)
    inputs = {stamp_to_ns(msg.header.stamp): msg
              for _, msg in read_topic(source, DETECTIONS_TOPIC)}
    assert len(heatmaps) == len(ranked) == 4
    for index, (_, heatmap), (time_ns, scored) in zip(range(4), heatmaps, ranked):
        detections = inputs[stamp_to_ns(heatmap.header.stamp)]
        expected = frame_job(tiny_backend, rgbs[index], detection_regions(detections))
        got = np.frombuffer(heatmap.data, np.float32).reshape(heatmap.height, heatmap.width)
        np.testing.assert_allclose(got, expected.heatmap, atol=1e-6)
        assert header_of(scored) == header_of(heatmap)  # the image's, as on every output
        assert time_ns == heatmaps[index][0]
        hypotheses = [detection.results for detection in scored.detections]
        assert all(len(results) == 1 for results in hypotheses)
        assert {results[0].hypothesis.class_id for results in hypotheses} <= {'hold'}
        scores = [results[0].hypothesis.score for results in hypotheses]
        assert scores == sorted(scores, reverse=True)
        by_id = {detection.id: detection for detection in detections.detections}
        for detection in scored.detections:  # the input boxes, unchanged
            assert box_of(detection) == box_of(by_id[detection.id])
            assert header_of(detection) == header_of(by_id[detection.id])
        best = expected.best_region
        assert sorted(scores, reverse=True) == pytest.approx(
            sorted(expected.region_scores, reverse=True))
        assert len(scored.detections) == len(expected.regions)
        if best is not None:
            assert scored.detections[0].id == best.source_id
    assert [len(msg.detections) for _, msg in ranked] == [2, 0, 1, 8]
    assert [d.id for d in ranked[2][1].detections] == ['det3']  # the only usable box


def test_roi_is_one_fixed_box_and_zero_size_is_the_whole_frame(tmp_path, tiny_backend,
                                                               detector_bag):
    source, rgbs = detector_bag
    roi = parse_box('20,10,60,50')
    summary, output = run_detections(tmp_path, tiny_backend, source, roi=roi,
                                     regions=RegionSettings(margin=0.1))
    assert (summary.frames_out, summary.regions_run, dict(summary.skipped)) == (6, 6, {})
    assert DETECTIONS_OUT not in topics_of(output)  # only with a detections topic
    for (_, heatmap), rgb in zip(read_topic(output, '/affordance/heatmap'), rgbs):
        expected = frame_job(tiny_backend, rgb, [roi], True, RegionSettings(margin=0.1))
        got = np.frombuffer(heatmap.data, np.float32).reshape(heatmap.height, heatmap.width)
        np.testing.assert_allclose(got, expected.heatmap, atol=1e-6)
        assert not got[:, :14].any() and got[:, 14:86].any()  # its 72 px square window
    (tmp_path / 'whole').mkdir()
    whole, _ = run_detections(tmp_path / 'whole', tiny_backend, source,
                              roi=parse_box('0,0,0,0'))
    assert (whole.frames_out, whole.regions_run) == (6, 6)


def test_nothing_written_says_why_and_exits_3(tmp_path, capsys, detector_bag, tiny_onnx):
    status, out, err = run_cli(capsys, detector_bag[0], '--out', tmp_path / 'out', '--model',
                               tiny_onnx, '--roi', '500,400,20,20')
    assert status == 3 and 'skipped: 6 (bad_roi 6)' in out
    assert 'no frame was written: the --roi box lies wholly outside the images' in err
    summary = BagSummary(frames_in=4, skipped=Counter(no_detections=4))
    assert '4 of 4 frames had no detections within --sync-slop' in \
        summary.explain_nothing_written()


def test_detections_cli_runs_with_ros_and_vision_msgs_blocked(tmp_path, detector_bag, tiny_onnx):
    out = tmp_path / 'out'
    assert 'vision_msgs' in NO_ROS_RUNNER
    result = subprocess.run(
        [sys.executable, '-c', NO_ROS_RUNNER, str(detector_bag[0]), '--out', str(out), '--model',
         str(tiny_onnx), '--detections-topic', DETECTIONS_TOPIC, '--no-progress'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'frames in: 6, frames out: 4, skipped: 2 (no_detections 2)' in result.stdout
    assert 'frames with region problems: bad_roi 1, empty_detections 1, too_many_regions 1' \
        in result.stdout
    assert len(read_topic(out, DETECTIONS_OUT)) == 4


@pytest.mark.parametrize('argv, fragments', [
    (['--roi', '1,2,3'], ['--roi', "'1,2,3'", 'x,y,w,h']),
    (['--roi=-4,2,3,5'], ['--roi', 'x,y,w,h']),
    (['--roi', 'a,b,c,d'], ['--roi']),
    (['--roi-margin', '-1'], ['--roi-margin', 'roi_margin']),
    (['--max-regions', '0'], ['--max-regions', 'max_regions']),
    (['--roi', '1,2,3,4', '--detections-topic', DETECTIONS_TOPIC], ['--roi', 'not both']),
    (['--detections-topic', '/nowhere'], ['no topic /nowhere', DETECTIONS_TOPIC]),
    (['--detections-topic', IMAGE_TOPIC], ['--detections-topic needs',
                                           'vision_msgs/msg/Detection2DArray']),
])
def test_region_user_errors_are_one_line(tmp_path, capsys, detector_bag, tiny_onnx, argv,
                                         fragments):
    status, _, err = run_cli(capsys, detector_bag[0], '--out', tmp_path / 'out', '--model',
                             tiny_onnx, *argv)
    assert_one_line_error(status, err, *fragments)
    assert not (tmp_path / 'out').exists()
