"""Detector boxes and ROIs -> regions, without ROS (rclpy- and rosbags-like messages alike)."""

from types import SimpleNamespace as Msg

from affordance_grounding.perception.detections import (
    best_hypothesis, detection_regions, empty_message, ranked_detections, roi_region,
    unpaired_message)
from affordance_grounding.perception.regions import choose_regions, Region
from affordance_grounding.perception.stamps import NS_PER_S
import numpy as np
import pytest

UINT32 = 2 ** 32


def detection_v4(cx, cy, w, h, det_id='', hypotheses=(), theta=0.0):
    """vision_msgs 4 (Humble+): center.position.x/y, center.theta, results[].hypothesis."""
    results = [Msg(hypothesis=Msg(class_id=cls, score=score), pose=None)
               for cls, score in hypotheses]
    center = Msg(position=Msg(x=cx, y=cy), theta=theta)
    return Msg(header=None, id=det_id, results=results,
               bbox=Msg(center=center, size_x=w, size_y=h))


def detection_v3(cx, cy, w, h, det_id='', hypotheses=()):
    """vision_msgs 3 (Foxy): center.x/y/theta, results[].id/score."""
    results = [Msg(id=cls, score=score) for cls, score in hypotheses]
    return Msg(header=None, id=det_id, results=results,
               bbox=Msg(center=Msg(x=cx, y=cy, theta=0.0), size_x=w, size_y=h))


def test_both_vision_msgs_layouts_become_the_same_regions():
    for make in (detection_v4, detection_v3):
        array = Msg(detections=[make(100, 50, 40, 20, 'cup1', [('cup', 0.4), ('mug', 0.9)]),
                                make(10, 10, 4, 4)])
        first, second = detection_regions(array)
        assert first == Region(80, 40, 40, 20, source_id='cup1', label='mug', score=0.9,
                               detection_index=0)
        assert (second.label, second.score, second.detection_index) == ('', None, 1)


def test_a_rotated_box_becomes_the_upright_box_around_it():
    region, = detection_regions(Msg(detections=[
        detection_v4(100, 100, 40, 20, theta=np.pi / 2)]))
    assert (region.width, region.height) == pytest.approx((20, 40))
    assert (region.x, region.y) == pytest.approx((90, 80))


def test_best_hypothesis_without_results():
    assert best_hypothesis([]) == ('', None)


@pytest.mark.parametrize('x, y, w, h, usable', [
    (10, 20, 30, 40, True),                # inside
    (0, 0, 0, 0, True),                    # the message's default: the whole frame
    (UINT32 - 5, 10, 30, 30, False),       # x = -5 wrapped into uint32
    (10, 10, UINT32 - 1, 30, False),       # width -1 wrapped
    (700, 500, 50, 50, False),             # wholly outside a 640x480 frame
    (600, 10, 10 ** 6, 30, False),         # huge
    (630, 470, 50, 50, True),              # partly outside: clipped
])
def test_roi_messages_are_taken_as_sent_and_bad_ones_are_counted(x, y, w, h, usable):
    roi = Msg(x_offset=x, y_offset=y, width=w, height=h, do_rectify=True)
    choice = choose_regions([roi_region(roi)], (480, 640), zero_size_is_whole_frame=True)
    assert len(choice.regions) == int(usable)
    assert choice.problems == ({} if usable else {'bad_roi': 1})


def test_hundreds_of_boxes_keep_the_largest_and_count_the_rest():
    array = Msg(detections=[detection_v4(320, 240, 2 * index + 2, index + 2, str(index))
                            for index in range(300)])
    choice = choose_regions(detection_regions(array), (480, 640), max_regions=8)
    assert [region.source_id for region in choice.regions] == [str(i) for i in
                                                               range(299, 291, -1)]
    assert choice.problems == {'too_many_regions': 292}


def test_ranked_detections_list_the_regions_that_ran_best_first():
    regions = (Region(0, 0, 5, 5, detection_index=3), Region(5, 5, 5, 5, detection_index=0),
               Region(9, 9, 5, 5))  # an ROI has no detection to echo
    assert ranked_detections(regions, np.array([0.2, 0.7, 0.9])) == [(0, 0.7), (3, 0.2)]
    assert ranked_detections((), None) == []


def test_unpaired_and_empty_messages_name_the_stamps_and_the_fix():
    image = 12 * NS_PER_S
    assert 'no detections received yet' in unpaired_message(image, None, 0.05)
    line = unpaired_message(image, image + 250_000_000, 0.05)
    assert '12.000 s' in line and '+250.0 ms' in line and 'sync_slop_s=0.05' in line
    assert 'zero heatmap' in empty_message(image)
