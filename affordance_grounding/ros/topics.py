"""The node's topics: create, log and destroy its publishers and subscriptions.

Kept apart from the node's lifecycle so that which topic has which type and QoS lives in one
place. The colour input is ``image`` (sensor_msgs/Image) or, with ``image_transport:
compressed``, ``<image>/compressed`` (sensor_msgs/CompressedImage) resolved after remapping,
as image_transport names it; depth and camera_info stay raw. With the ``cameras`` parameter
every camera gets the same inputs and outputs under ``<camera>/`` (``head/image`` ->
``head/heatmap``) plus an optional ``<camera>/action`` that overrides the shared ``action``.
Topic table: docs/ros_interface.md.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from affordance_grounding.ros import qos
from affordance_grounding.ros.channels import OutputPublishers
from affordance_grounding.ros.detection_messages import import_vision_msgs
from affordance_grounding.ros.params import NodeConfig
from geometry_msgs.msg import PointStamped, PoseStamped
try:  # Jazzy and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble (JetPack 6): the same class lives in rclpy.qos_event
    from rclpy.qos_event import SubscriptionEventCallbacks
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, RegionOfInterest
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray


@dataclass
class InputCallbacks:
    """What the node does with each input, told which camera it came from.

    ``image``, ``depth``, ``camera_info``, ``roi`` and ``detections`` get (msg, camera);
    ``action`` gets (msg, camera) with camera None for the shared ``action`` topic; ``lost``
    gets (count, camera), the middleware's count of images lost in transport. camera is ''
    for the single camera.
    """

    image: Callable
    action: Callable
    depth: Callable
    camera_info: Callable
    lost: Callable[[int, str], None]
    roi: Optional[Callable] = None
    detections: Optional[Callable] = None


def camera_prefix(camera: str) -> str:
    """Topic prefix of a camera: '' for the single camera, else ``<camera>/``."""
    return f'{camera}/' if camera else ''


def camera_names(config: NodeConfig) -> List[str]:
    """Return the cameras of a configuration; [''] (one unnamed camera) by default."""
    return list(config.cameras) or ['']


def colour_topic(node, config: NodeConfig, camera: str = '') -> str:
    """Return the colour input topic: ``image``, or ``image`` remapped plus ``/compressed``."""
    name = camera_prefix(camera) + 'image'
    if config.image_transport == 'compressed':
        return node.resolve_topic_name(name) + '/compressed'
    return name


class NodeTopics:
    """Publishers (from configure to cleanup) and subscriptions (while active) of one node."""

    def __init__(self, node):
        """Bind to a lifecycle node; nothing is created yet."""
        self._node = node
        self.outputs_by_camera: Dict[str, OutputPublishers] = {}
        self.active_action = None
        self.inputs: List = []

    @property
    def outputs(self) -> Optional[OutputPublishers]:
        """The first (with the default: the only) camera's publishers; None before configure."""
        return next(iter(self.outputs_by_camera.values()), None)

    def create_publishers(self, config: NodeConfig) -> Dict[str, OutputPublishers]:
        """Create every camera's output publishers (3D ones only with ``enable_3d``)."""
        overrides = QoSOverridingOptions.with_default_policies()

        def publisher(msg_type, topic, profile=qos.RELIABLE):
            return self._node.create_lifecycle_publisher(msg_type, topic, profile,
                                                         qos_overriding_options=overrides)
        for camera in camera_names(config):
            prefix = camera_prefix(camera)
            outputs = OutputPublishers(
                publisher(Image, prefix + 'heatmap'), publisher(Image, prefix + 'grasp_mask'),
                publisher(Image, prefix + 'overlay'))
            if config.enable_3d:
                outputs.grasp_point = publisher(PointStamped, prefix + 'grasp_point')
                outputs.markers = publisher(MarkerArray, prefix + 'markers')
                outputs.affordance_cloud = publisher(PointCloud2, prefix + 'affordance_cloud')
                outputs.grasp_pose = publisher(PoseStamped, prefix + 'grasp_pose')
            if config.roi_source == 'detections':
                outputs.affordance_detections = publisher(
                    import_vision_msgs().Detection2DArray, prefix + 'affordance_detections')
            if camera:  # what this camera runs: its own action, else the shared one
                outputs.active_action = publisher(String, prefix + 'active_action', qos.LATCHED)
            self.outputs_by_camera[camera] = outputs
        # The shared action's echo stays beside the shared `action` (with cameras too): who
        # sends the shared command reads how it was understood without knowing the cameras.
        self.active_action = publisher(String, 'active_action', qos.LATCHED)
        return self.outputs_by_camera

    def subscribe(self, config: NodeConfig, callbacks: InputCallbacks) -> None:
        """Subscribe to every input; the colour ones also report images lost in transport."""
        overrides = QoSOverridingOptions.with_default_policies()
        image_qos = qos.image_qos(config.image_qos)
        colour_type = CompressedImage if config.image_transport == 'compressed' else Image
        topics = []
        for camera in camera_names(config):
            prefix = camera_prefix(camera)
            lost = SubscriptionEventCallbacks(
                message_lost=lambda info, c=camera: callbacks.lost(info.total_count_change, c))
            topics.append((colour_type, colour_topic(self._node, config, camera),
                           lambda msg, c=camera: callbacks.image(msg, c), image_qos, lost))
            if camera:
                topics.append((String, prefix + 'action',
                               lambda msg, c=camera: callbacks.action(msg, c), qos.COMMANDS,
                               None))
            if config.enable_3d:
                topics += [(Image, prefix + 'depth', lambda msg, c=camera: callbacks.depth(msg, c),
                            image_qos, None),
                           (CameraInfo, prefix + 'camera_info',
                            lambda msg, c=camera: callbacks.camera_info(msg, c), image_qos, None)]
            topics += self._region_inputs(config, callbacks, camera)
        topics.insert(1, (String, 'action', lambda msg: callbacks.action(msg, None),
                          qos.COMMANDS, None))
        self.inputs = [self._node.create_subscription(msg_type, topic, callback, profile,
                                                      qos_overriding_options=overrides,
                                                      event_callbacks=events)
                       for msg_type, topic, callback, profile, events in topics]

    @staticmethod
    def _region_inputs(config: NodeConfig, callbacks: InputCallbacks, camera: str) -> List:
        """Return the ``roi`` or ``detections`` input of a camera (``roi_source``), if any."""
        prefix = camera_prefix(camera)
        if config.roi_source == 'roi':
            return [(RegionOfInterest, prefix + 'roi',
                     lambda msg, c=camera: callbacks.roi(msg, c), qos.COMMANDS, None)]
        if config.roi_source == 'detections':
            return [(import_vision_msgs().Detection2DArray, prefix + 'detections',
                     lambda msg, c=camera: callbacks.detections(msg, c), qos.DETECTIONS, None)]
        return []

    def unsubscribe(self) -> None:
        """Destroy every subscription."""
        for subscription in self.inputs:
            self._node.destroy_subscription(subscription)
        self.inputs = []

    def destroy_publishers(self) -> None:
        """Destroy every publisher."""
        publishers = [publisher for outputs in self.outputs_by_camera.values()
                      for publisher in vars(outputs).values()]
        for publisher in publishers + [self.active_action]:
            if publisher is not None:
                self._node.destroy_lifecycle_publisher(publisher)
        self.outputs_by_camera, self.active_action = {}, None

    def describe(self, *other_publishers) -> List[str]:
        """One start-up log line per topic: direction, resolved name, type and QoS.

        ``other_publishers`` are the node's publishers that live outside this class (e.g.
        /diagnostics, which exists from start-up to shutdown).
        """
        publishers = [publisher for outputs in self.outputs_by_camera.values()
                      for publisher in vars(outputs).values() if publisher is not None]
        publishers += [self.active_action, *other_publishers]
        return [f'{direction} {entity.topic_name} [{entity.msg_type.__name__}] '
                f'qos {qos.describe_qos(entity.qos_profile)}'
                for direction, entities in (('in ', self.inputs), ('out', publishers))
                for entity in entities]
