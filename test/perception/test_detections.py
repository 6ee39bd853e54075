"""Detection2DArray -> regions (both vision_msgs layouts) and regions -> ranked detections."""

import math
from types import SimpleNamespace

from affordance_grounding.perception.detections import (
    best_hypothesis, detections_to_regions, ranked_detections, regions_to_detections)
from affordance_grounding.perception.frame_processor import FrameInput, FrameResult
from affordance_grounding.perception.regions import choose_regions, Region
import numpy as np
import pytest

HW = (96, 128)


def detection_4x(center_x, center_y, width, height, hypotheses=(), detection_id=''):
    """vision_msgs 4.x (Humble, Jazzy): Pose2D.position and a nested hypothesis."""
    center = SimpleNamespace(position=SimpleNamespace(x=center_x, y=center_y), theta=0.3)
    results = [SimpleNamespace(hypothesis=SimpleNamespace(class_id=name, score=score))
               for name, score in hypotheses]
    return SimpleNamespace(bbox=SimpleNamespace(center=center, size_x=width, size_y=height),
                           results=results, id=detection_id)


def detection_3x(center_x, center_y, width, height, hypotheses=(), detection_id=''):
    """vision_msgs 3.x (Foxy): geometry_msgs/Pose2D and a flat hypothesis with ``id``."""
    center = SimpleNamespace(x=center_x, y=center_y, theta=0.0)
    results = [SimpleNamespace(id=name, score=score) for name, score in hypotheses]
    return SimpleNamespace(bbox=SimpleNamespace(center=center, size_x=width, size_y=height),
                           results=results, id=detection_id)


@pytest.mark.parametrize('build', [detection_4x, detection_3x])
def test_both_layouts_give_the_box_id_and_best_hypothesis(build):
    msg = SimpleNamespace(detections=[
        build(50.0, 40.0, 20.0, 10.0, [('cup', 0.4), ('mug', 0.7)], 'a'),
        build(5.0, 5.0, 4.0, 6.0, [], 'b')])
    first, second = detections_to_regions(msg)
    assert first == Region(40.0, 35.0, 20.0, 10.0, 'a', 'mug', 0.7)
    assert second == Region(3.0, 2.0, 4.0, 6.0, 'b', '', None)
    assert detections_to_regions(SimpleNamespace(detections=[])) == []


def test_bad_values_pass_through_for_the_frame_job_to_count():
    (region,) = detections_to_regions(SimpleNamespace(detections=[
        detection_4x(math.nan, 1.0, -3.0, 2.0, [('x', math.nan)])]))
    assert math.isnan(region.x) and region.width == -3.0
    assert best_hypothesis([]) == ('', None)


def test_regions_map_back_to_their_boxes_through_clipping_sorting_and_drops():
    boxes = [Region(0, 0, 5, 5, 'small'), Region(-900, -900, 4, 4, 'gone'),
             Region(-10, 10, 60, 40, 'clipped'), Region(20, 20, 8, 8, 'twin', score=math.nan),
             Region(20, 20, 8, 8, 'twin', score=math.nan)]
    choice = choose_regions(boxes, HW, max_regions=3)
    assert [region.source_id for region in choice.regions] == ['clipped', 'twin', 'twin']
    assert regions_to_detections(boxes, choice.regions, HW) == [2, 3, 4]
    with pytest.raises(ValueError, match='none of the 5 boxes'):
        regions_to_detections(boxes, [Region(1, 1, 1, 1)], HW)


def test_ranked_detections_lists_what_ran_best_first_with_box_indices():
    rgb = np.zeros(HW + (3,), np.uint8)
    boxes = [Region(0, 0, 10, 10, 'a'), Region(0, 0, 0, 0, 'whole'), Region(30, 30, 20, 20, 'b')]
    frame = FrameInput(rgb, 'hold', 0, boxes=boxes, zero_size_is_whole_frame=True)
    regions = choose_regions(boxes, HW, zero_size_is_whole_frame=True).regions
    result = FrameResult(np.zeros(HW, np.float32), np.zeros(HW, np.uint8), None,
                         regions=regions, region_scores=np.array([0.2, 0.9, 0.5]))
    assert [region.source_id for region in regions] == ['whole', 'b', 'a']
    assert ranked_detections(frame, result) == [(2, 0.9), (0, 0.5), (1, 0.2)]
    whole_frame = FrameInput(rgb, 'hold', 0)
    assert ranked_detections(whole_frame, FrameResult(result.heatmap, result.mask, None)) == []
