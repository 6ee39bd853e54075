"""A detector's vision_msgs/Detection2DArray <-> the frame job's regions, without ROS.

Duck-typed on the message's fields, so rclpy's messages and a bag's ``rosbags`` types (read
from the bag's own definitions, vision_msgs need not be installed) both work. Both layouts of
vision_msgs are read: 4.x (Humble and later: ``bbox.center.position.x``, hypotheses under
``results[i].hypothesis``) and 3.x (Foxy: ``bbox.center.x``, ``results[i].id``).
"""

from typing import List, Optional, Sequence, Tuple

from affordance_grounding.perception.frame_processor import FrameInput, FrameResult
from affordance_grounding.perception.regions import clip_region, ImageHW, Region


def detections_to_regions(msg) -> List[Region]:
    """Return one :class:`Region` per detection of a Detection2DArray, in message order.

    The box is the axis-aligned ``bbox`` (centre and size in colour-image pixels; a rotation
    ``theta`` is ignored, as a crop is axis-aligned); the region keeps the detection's ``id``
    and its best hypothesis (class and score) for the caller's output. Bad values (NaN,
    negative sizes) are passed on as they are: the frame job drops and counts them.
    """
    return [detection_to_region(detection) for detection in msg.detections]


def detection_to_region(detection) -> Region:
    """One ``vision_msgs/Detection2D`` -> :class:`Region` (see :func:`detections_to_regions`)."""
    center = detection.bbox.center
    point = getattr(center, 'position', center)  # 4.x: Pose2D.position; 3.x: Pose2D.x, .y
    label, score = best_hypothesis(detection.results)
    return Region.from_center(float(point.x), float(point.y), float(detection.bbox.size_x),
                              float(detection.bbox.size_y), source_id=str(detection.id),
                              label=label, score=score)


def best_hypothesis(results: Sequence) -> Tuple[str, Optional[float]]:
    """(class, score) of the highest-scoring ``ObjectHypothesisWithPose``; ('', None) if none."""
    best: Tuple[str, Optional[float]] = ('', None)
    for result in results:
        hypothesis = getattr(result, 'hypothesis', result)  # 4.x nests it; 3.x does not
        class_id = getattr(hypothesis, 'class_id', getattr(hypothesis, 'id', ''))
        score = float(hypothesis.score)
        if best[1] is None or score > best[1]:
            best = (str(class_id), score)
    return best


def ranked_detections(frame: FrameInput, result: FrameResult) -> List[Tuple[int, float]]:
    """(box index, score for the action) of every region that ran, the best first.

    What ``affordance_detections`` lists: each detection the frame job used, once, scored.
    Boxes it dropped (bad, beyond ``max_regions``) have no score and are left out.
    """
    if not frame.boxes or result.region_scores is None:
        return []
    sources = regions_to_detections(frame.boxes, result.regions, frame.rgb.shape[:2],
                                    frame.zero_size_is_whole_frame)
    return [(sources[index], float(result.region_scores[index])) for index in result.ranking]


def regions_to_detections(boxes: Sequence[Region], regions: Sequence[Region],
                          image_hw: ImageHW, zero_size_is_whole_frame: bool = False
                          ) -> List[int]:
    """For each region that ran, the index of the box (detection) it came from.

    The frame job clips, drops and reorders the boxes (perception/regions.py,
    ``choose_regions``); clipping is a pure function of the box, so clipping every box again
    and matching the results finds each region's source. Equal clipped boxes (duplicates)
    are matched in input order, as ``choose_regions`` keeps them.

    Args:
        boxes: The boxes given to the frame job (``FrameInput.boxes``), in message order.
        regions: ``FrameResult.regions``.
        image_hw: (height, width) of the colour image.
        zero_size_is_whole_frame: As given in the ``FrameInput``.

    Raises:
        ValueError: If a region matches no box (``regions`` is not from ``boxes``).
    """
    clipped = [_match_key(clip_region(box, image_hw, zero_size_is_whole_frame))
               for box in boxes]
    used = [False] * len(boxes)
    sources = []
    for region in regions:
        key = _match_key(region)
        match = next((index for index, candidate in enumerate(clipped)
                      if not used[index] and candidate == key), None)
        if match is None:
            raise ValueError(f'region {region} comes from none of the {len(boxes)} boxes')
        used[match] = True
        sources.append(match)
    return sources


def _match_key(region: Optional[Region]) -> Optional[tuple]:
    """Return what identifies a clipped region (not its score: NaN never equals itself)."""
    if region is None:
        return None
    return (region.x, region.y, region.width, region.height, region.source_id, region.label)
