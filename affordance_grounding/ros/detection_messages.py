"""``affordance_detections``: the input detections re-scored for the action (rclpy messages).

vision_msgs is imported only with ``roi_source: detections`` (through
:func:`import_vision_msgs`), so the node runs without it in the other modes. Layout
(docs/ros_interface.md, "Regions"): a ``vision_msgs/Detection2DArray`` with the colour
image's header (as every other output, so it pairs with ``heatmap`` and ``grasp_point`` by
exact stamp); one ``Detection2D`` per input detection that ran, the best first, each with its
own input ``header``, ``id`` and ``bbox`` unchanged and ``results`` = one
``ObjectHypothesisWithPose`` whose ``hypothesis.class_id`` is the action and
``hypothesis.score`` the region's affordance score in [0, 1] (``pose`` left at its default).
"""

import os

from affordance_grounding.perception.detections import ranked_detections
from affordance_grounding.perception.frame_processor import FrameResult
from affordance_grounding.ros.conversions import copy_header
from affordance_grounding.ros.params import ParameterError


def import_vision_msgs():
    """Return ``vision_msgs.msg``, or raise one line naming the package to install.

    Raises:
        ParameterError: When vision_msgs is not installed (caught by configure).
    """
    try:
        import vision_msgs.msg as vision_msgs
    except ImportError:
        distro = os.environ.get('ROS_DISTRO') or '<distro>'
        raise ParameterError(
            f'roi_source=detections needs vision_msgs, which is not installed: install '
            f'ros-{distro}-vision-msgs (sudo apt install ros-{distro}-vision-msgs), or set '
            'roi_source to none or roi') from None
    return vision_msgs


def require_message_packages(config) -> None:
    """Fail configure early when the chosen ``roi_source`` needs a missing package."""
    if config.roi_source == 'detections':
        import_vision_msgs()


def to_affordance_detections(header, detections, result: FrameResult, action: str):
    """Build ``affordance_detections`` from the input array and the frame's region scores."""
    vision_msgs = import_vision_msgs()
    output = vision_msgs.Detection2DArray(header=copy_header(header))
    for index, score in ranked_detections(result.regions, result.region_scores):
        source = detections.detections[index]
        hypothesis = vision_msgs.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = action
        hypothesis.hypothesis.score = score
        output.detections.append(vision_msgs.Detection2D(
            header=copy_header(source.header), id=source.id, bbox=source.bbox,
            results=[hypothesis]))
    return output
