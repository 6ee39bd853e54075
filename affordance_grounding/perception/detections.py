"""A detector's boxes and a fixed ROI as :class:`Region` lists, without ROS.

Duck-typed on the message fields, so rclpy messages and ``rosbags`` messages (the bag tool
reads vision_msgs from the bag's own definitions) convert alike:

* ``vision_msgs/Detection2DArray``: ``detections[]`` of ``Detection2D`` with ``id``,
  ``bbox`` (``BoundingBox2D``: ``center`` and ``size_x``, ``size_y`` in pixels) and
  ``results[]``. vision_msgs 4 (Humble and newer) has ``center.position.x/y`` and
  ``center.theta``, ``results[i].hypothesis.class_id/score``; vision_msgs 3 (Foxy) has
  ``center.x/y/theta`` and ``results[i].id/score``. Both are read.
* ``sensor_msgs/RegionOfInterest``: ``x_offset``, ``y_offset``, ``width``, ``height``
  (uint32; ``do_rectify`` is ignored: boxes are in the colour image as received).

Also the one-line explanations of the detection problems the adapters count.
"""

import math
from typing import List, Optional, Sequence, Tuple

from affordance_grounding.perception.regions import rank_by_score, Region
from affordance_grounding.perception.stamps import NS_PER_S

NO_DETECTIONS = 'no_detections'
EMPTY_DETECTIONS = 'empty_detections'


def roi_region(roi) -> Region:
    """Return a ``sensor_msgs/RegionOfInterest`` as a region (width or height 0: whole frame).

    The values are taken as they are: a negative offset wrapped into uint32 becomes a corner
    billions of pixels away, which :func:`~affordance_grounding.perception.regions.clip_region`
    rejects as a ``bad_roi``.
    """
    return Region(int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height))


def box_center(center) -> Tuple[float, float, float]:
    """(x, y, theta) of a ``BoundingBox2D.center`` in either vision_msgs layout."""
    position = getattr(center, 'position', center)  # 4.x: Pose2D.position; 3.x: Pose2D itself
    return float(position.x), float(position.y), float(getattr(center, 'theta', 0.0))


def best_hypothesis(results) -> Tuple[str, Optional[float]]:
    """(class id, score) of the detector's most confident hypothesis; ('', None) without one."""
    best: Tuple[str, Optional[float]] = ('', None)
    for result in results:
        hypothesis = getattr(result, 'hypothesis', result)  # 4.x nests it; 3.x does not
        class_id = getattr(hypothesis, 'class_id', getattr(hypothesis, 'id', ''))
        score = float(hypothesis.score)
        if best[1] is None or score > best[1]:
            best = (str(class_id), score)
    return best


def detection_region(detection, index: int) -> Region:
    """Return one ``Detection2D`` as a region: its box, id, best class and the input index.

    A rotated box (``theta`` != 0) becomes the upright box around it: the crop is upright.
    """
    center_x, center_y, theta = box_center(detection.bbox.center)
    width, height = float(detection.bbox.size_x), float(detection.bbox.size_y)
    if theta and math.isfinite(theta):
        cos, sin = abs(math.cos(theta)), abs(math.sin(theta))
        width, height = width * cos + height * sin, width * sin + height * cos
    label, score = best_hypothesis(detection.results)
    return Region.from_center(center_x, center_y, width, height,
                              source_id=str(getattr(detection, 'id', '')), label=label,
                              score=score, detection_index=index)


def detection_regions(array) -> List[Region]:
    """Return every detection of a ``Detection2DArray`` as a region, in the input order."""
    return [detection_region(detection, index)
            for index, detection in enumerate(array.detections)]


def unpaired_message(image_stamp_ns: int, nearest_stamp_ns: Optional[int],
                     slop_s: float) -> str:
    """Say why a frame had no detections: none at all, or the nearest stamp and how far off."""
    image = f'image stamp {image_stamp_ns / NS_PER_S:.3f} s'
    if nearest_stamp_ns is None:
        return (f'{image}: no detections received yet; is the detector publishing on '
                'detections (remap it, e.g. -r detections:=/detector/detections)?')
    offset_ms = (nearest_stamp_ns - image_stamp_ns) / 1e6
    return (f'{image}: nearest detections stamp {nearest_stamp_ns / NS_PER_S:.3f} s is '
            f'{offset_ms:+.1f} ms away, more than sync_slop_s={slop_s}; the detector must copy '
            "the image's header stamp, or raise sync_slop_s")


def empty_message(image_stamp_ns: int) -> str:
    """Say what a frame whose detections hold no box produces."""
    return (f'image stamp {image_stamp_ns / NS_PER_S:.3f} s: its detections hold no box; '
            'published a zero heatmap and an empty affordance_detections')


def ranked_detections(regions: Sequence[Region], scores: Optional[Sequence[float]]
                      ) -> List[Tuple[int, float]]:
    """(input detection index, affordance score) of every region that ran, the best first.

    What ``affordance_detections`` lists, in the node and the bag tool alike: the input
    detections that ran (bad or surplus boxes have no score and are left out), each scored
    for the action.
    """
    if scores is None:
        return []
    return [(regions[index].detection_index, float(scores[index]))
            for index in rank_by_score(scores) if regions[index].detection_index is not None]
