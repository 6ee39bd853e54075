"""The node's topics: create, log and destroy its publishers and subscriptions.

Kept apart from the node's lifecycle so that which topic has which type and QoS lives in one
place. The colour input is ``image`` (sensor_msgs/Image) or, with ``image_transport:
compressed``, ``<image>/compressed`` (sensor_msgs/CompressedImage) resolved after remapping,
as image_transport names it; depth and camera_info stay raw. Topic table: docs/ros_interface.md.
"""

from dataclasses import dataclass
from typing import Callable, List, Optional

from affordance_grounding.ros import qos
from affordance_grounding.ros.frame_worker import OutputPublishers
from affordance_grounding.ros.params import NodeConfig
from geometry_msgs.msg import PointStamped, PoseStamped
try:  # Jazzy and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble (JetPack 6): the same class lives in rclpy.qos_event
    from rclpy.qos_event import SubscriptionEventCallbacks
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray


@dataclass
class InputCallbacks:
    """What the node does with each input; ``lost`` gets the middleware's lost-image count."""

    image: Callable
    action: Callable
    depth: Callable
    camera_info: Callable
    lost: Callable[[int], None]


def colour_topic(node, config: NodeConfig) -> str:
    """Return the colour input topic: ``image``, or ``image`` remapped plus ``/compressed``."""
    if config.image_transport == 'compressed':
        return node.resolve_topic_name('image') + '/compressed'
    return 'image'


class NodeTopics:
    """Publishers (from configure to cleanup) and subscriptions (while active) of one node."""

    def __init__(self, node):
        """Bind to a lifecycle node; nothing is created yet."""
        self._node = node
        self.outputs: Optional[OutputPublishers] = None
        self.active_action = None
        self.inputs: List = []

    def create_publishers(self, config: NodeConfig) -> OutputPublishers:
        """Create the output publishers (3D ones only with ``enable_3d``)."""
        overrides = QoSOverridingOptions.with_default_policies()

        def publisher(msg_type, topic, profile=qos.RELIABLE):
            return self._node.create_lifecycle_publisher(msg_type, topic, profile,
                                                         qos_overriding_options=overrides)
        self.outputs = OutputPublishers(
            publisher(Image, 'heatmap'), publisher(Image, 'grasp_mask'),
            publisher(Image, 'overlay'))
        if config.enable_3d:
            self.outputs.grasp_point = publisher(PointStamped, 'grasp_point')
            self.outputs.markers = publisher(MarkerArray, 'markers')
            self.outputs.affordance_cloud = publisher(PointCloud2, 'affordance_cloud')
            self.outputs.grasp_pose = publisher(PoseStamped, 'grasp_pose')
        self.active_action = publisher(String, 'active_action', qos.LATCHED)
        return self.outputs

    def subscribe(self, config: NodeConfig, callbacks: InputCallbacks) -> None:
        """Subscribe to every input; the colour one also reports images lost in transport."""
        overrides = QoSOverridingOptions.with_default_policies()
        image_qos = qos.image_qos(config.image_qos)
        colour_type = CompressedImage if config.image_transport == 'compressed' else Image
        lost = SubscriptionEventCallbacks(
            message_lost=lambda info: callbacks.lost(info.total_count_change))
        topics = [(colour_type, colour_topic(self._node, config), callbacks.image, image_qos,
                   lost),
                  (String, 'action', callbacks.action, qos.COMMANDS, None)]
        if config.enable_3d:
            topics += [(Image, 'depth', callbacks.depth, image_qos, None),
                       (CameraInfo, 'camera_info', callbacks.camera_info, image_qos, None)]
        self.inputs = [self._node.create_subscription(msg_type, topic, callback, profile,
                                                      qos_overriding_options=overrides,
                                                      event_callbacks=events)
                       for msg_type, topic, callback, profile, events in topics]

    def unsubscribe(self) -> None:
        """Destroy every subscription."""
        for subscription in self.inputs:
            self._node.destroy_subscription(subscription)
        self.inputs = []

    def destroy_publishers(self) -> None:
        """Destroy every publisher."""
        publishers = [] if self.outputs is None else list(vars(self.outputs).values())
        for publisher in publishers + [self.active_action]:
            if publisher is not None:
                self._node.destroy_lifecycle_publisher(publisher)
        self.outputs = self.active_action = None

    def describe(self) -> List[str]:
        """One start-up log line per topic: direction, resolved name, type and QoS."""
        publishers = [p for p in vars(self.outputs).values() if p is not None]
        return [f'{direction} {entity.topic_name} [{entity.msg_type.__name__}] '
                f'qos {qos.describe_qos(entity.qos_profile)}'
                for direction, entities in (('in ', self.inputs),
                                            ('out', publishers + [self.active_action]))
                for entity in entities]
