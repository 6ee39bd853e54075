"""A frame's results onto its camera's topics, as rclpy messages with the input's header.

What to publish is decided by the frame job (``FrameResult.outputs_3d``); this module only
builds the messages and sends them. The worker receives :func:`publish_result` from the node,
so the worker itself never imports a message package.
"""

import time
from typing import Dict

from affordance_grounding.perception.frame_processor import FrameResult, Outputs3D
from affordance_grounding.ros.channels import CameraChannel, OutputPublishers
from affordance_grounding.ros.conversions import array_to_image_msg
from affordance_grounding.ros.detection_messages import to_affordance_detections
from affordance_grounding.ros.messages import (
    to_frame_markers, to_point_cloud, to_point_stamped, to_pose_stamped)


def publish_result(channel: CameraChannel, msg, result: FrameResult, label: str,
                   detections=None) -> Dict[str, float]:
    """Publish one frame's images and, with ``enable_3d``, its 3D outputs.

    Args:
        channel: The camera whose publishers to use.
        msg: The input image message (its header is copied into every output).
        result: The frame's results.
        label: The action, for the marker text.
        detections: The paired input ``Detection2DArray`` (``roi_source: detections``);
            ``affordance_detections`` is published from it.

    Returns:
        Seconds spent: ``publish`` (images) and, with ``enable_3d``, ``publish_3d``.
    """
    start = time.perf_counter()
    publish_images(channel.publishers, msg.header, result)
    if detections is not None and channel.publishers.affordance_detections is not None:
        channel.publishers.affordance_detections.publish(
            to_affordance_detections(msg.header, detections, result, label))
    timings = {'publish': time.perf_counter() - start}
    if channel.publishers.grasp_point is not None:  # enable_3d: every frame, point or not
        start = time.perf_counter()
        publish_3d(channel.publishers, msg.header, result.outputs_3d(), label)
        timings['publish_3d'] = time.perf_counter() - start
    return timings


def publish_images(publishers: OutputPublishers, header, result: FrameResult) -> None:
    """Heatmap (32FC1), grasp mask (mono8) and, when rendered, the overlay (bgr8)."""
    publishers.heatmap.publish(array_to_image_msg(result.heatmap, '32FC1', header))
    publishers.grasp_mask.publish(array_to_image_msg(result.mask, 'mono8', header))
    if result.overlay is not None:
        publishers.overlay.publish(array_to_image_msg(result.overlay, 'bgr8', header))


def publish_3d(publishers: OutputPublishers, header, outputs: Outputs3D, label: str) -> None:
    """Grasp point, region cloud (only while subscribed), pose, and the frame's markers.

    Markers go out with every frame: one without a grasp point deletes the previous ones.
    """
    if outputs.point_xyz_m is not None:
        publishers.grasp_point.publish(to_point_stamped(header, outputs.point_xyz_m))
    if (outputs.cloud_xyzi is not None
            and publishers.affordance_cloud.get_subscription_count() > 0):
        publishers.affordance_cloud.publish(to_point_cloud(header, outputs.cloud_xyzi))
    if outputs.pose is not None:
        publishers.grasp_pose.publish(to_pose_stamped(header, outputs.pose))
    publishers.markers.publish(to_frame_markers(header, outputs, label))
