"""A client of the node over real topics: publishes images and actions, records outputs.

Used by the demo, the node benchmark and the tests, from a checkout. It waits for DDS
discovery by checking matched endpoints, never by sleeping blindly.
"""

from collections import defaultdict
import threading
import time
from typing import Callable, Dict, List, Optional

from affordance_grounding.ros import qos
from affordance_grounding.ros.conversions import array_to_image_msg
from affordance_grounding.ros.node import NODE_NAME
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, PoseStamped
import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

STAGE_KEYS = ('conversion', 'preprocess', 'inference', 'postprocess', 'publish', 'depth',
              'grasp_point', 'grasp_pose', 'publish_3d')
# topic (relative to the namespace) -> (type, QoS); '/diagnostics' is absolute.
OUTPUTS = {
    'heatmap': (Image, qos.RELIABLE), 'grasp_mask': (Image, qos.RELIABLE),
    'overlay': (Image, qos.RELIABLE), 'grasp_point': (PointStamped, qos.RELIABLE),
    'markers': (MarkerArray, qos.RELIABLE), 'active_action': (String, qos.LATCHED),
    'affordance_cloud': (PointCloud2, qos.RELIABLE), 'grasp_pose': (PoseStamped, qos.RELIABLE),
    '/diagnostics': (DiagnosticArray, 10),
}

NODE_STATUS_PREFIX = NODE_NAME  # the node's DiagnosticStatus names start with it


class GraphClient(Node):
    """Publishes ``image``/``depth``/``camera_info``/``action``; records every output topic."""

    def __init__(self, namespace: str = 'affordance', name: str = 'affordance_client',
                 outputs=tuple(OUTPUTS), **kwargs):
        """Create publishers and recording subscriptions (``outputs``: topics to record)."""
        super().__init__(name, namespace=namespace, **kwargs)
        self.image_pub = self.create_publisher(Image, 'image', qos.RELIABLE)
        self.depth_pub = self.create_publisher(Image, 'depth', qos.RELIABLE)
        self.info_pub = self.create_publisher(CameraInfo, 'camera_info', qos.RELIABLE)
        self.action_pub = self.create_publisher(String, 'action', qos.COMMANDS)
        self._condition = threading.Condition()
        self._messages: Dict[str, List] = defaultdict(list)
        self.arrival_s: Dict[str, List[float]] = defaultdict(list)
        for topic in outputs:
            msg_type, profile = OUTPUTS[topic]
            self.create_subscription(msg_type, topic, self._recorder(topic), profile)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _recorder(self, topic: str) -> Callable:
        def record(msg) -> None:
            with self._condition:
                self._messages[topic].append(msg)
                self.arrival_s[topic].append(time.time())
                self._condition.notify_all()
        return record

    def close(self) -> None:
        """Stop spinning and destroy the node."""
        self._executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        self.destroy_node()

    def wait_for_node(self, timeout_s: float = 30.0, with_depth: bool = False) -> None:
        """Wait until the node's subscriptions and publications are matched with ours."""
        publishers = [self.image_pub, self.action_pub]
        if with_depth:
            publishers += [self.depth_pub, self.info_pub]
        heatmap_topic = self.resolve_topic_name('heatmap')
        self.wait_until(lambda: all(p.get_subscription_count() > 0 for p in publishers)
                        and self.count_publishers(heatmap_topic) > 0,
                        timeout_s, 'the affordance node to appear on the ROS graph')

    def messages(self, topic: str) -> List:
        """Return a copy of what arrived on ``topic`` so far."""
        with self._condition:
            return list(self._messages[topic])

    def clear(self) -> None:
        """Forget recorded messages."""
        with self._condition:
            self._messages.clear()
            self.arrival_s.clear()

    def wait_for(self, topic: str, predicate: Callable = lambda msg: True,
                 timeout_s: float = 20.0, skip: int = 0):
        """Return the first message on ``topic``, past the first ``skip``, that fits ``predicate``.

        ``skip=len(client.messages(topic))`` waits for a message that has not arrived yet.
        """
        found = []

        def check() -> bool:
            found[:] = [msg for msg in self._messages[topic][skip:] if predicate(msg)][:1]
            return bool(found)
        with self._condition:
            if not self._condition.wait_for(check, timeout_s):
                raise TimeoutError(f'nothing matching on {topic} within {timeout_s} s')
        return found[0]

    def send_action(self, text: str) -> None:
        """Publish an action command."""
        self.action_pub.publish(String(data=text))

    def publish_image(self, image: np.ndarray, encoding: str = 'rgb8',
                      frame_id: str = 'camera_color_optical_frame',
                      stamp=None) -> Header:
        """Publish an array as an image stamped now (or ``stamp``); returns its header."""
        header = self.make_header(frame_id, stamp)
        self.image_pub.publish(array_to_image_msg(image, encoding, header))
        return header

    def make_header(self, frame_id: str, stamp=None) -> Header:
        """Return a header with ``stamp`` or the client clock's now."""
        return Header(frame_id=frame_id, stamp=stamp or self.get_clock().now().to_msg())

    def wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll ``condition`` until it holds; raise TimeoutError naming ``what`` at the limit."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f'timed out after {timeout_s} s waiting for {what}')
            time.sleep(0.05)


def wait_for_diagnostics(client: GraphClient, predicate: Callable[[Dict[str, str]], bool],
                         timeout_s: float = 20.0) -> Dict[str, str]:
    """Return the newest node diagnostics that satisfy ``predicate``, waiting for them.

    Every node status received since the newest one before the call is checked, not only the
    newest at each poll: when several nodes publish /diagnostics at the same period, one
    node's status can be followed within milliseconds by another's, and a poll of the newest
    alone could miss it every time.
    """
    deadline = time.monotonic() + timeout_s
    start = max(0, len(client.messages('/diagnostics')) - 1)
    values = None
    while True:
        for array in reversed(client.messages('/diagnostics')[start:]):
            candidate = node_status_values(array)
            if candidate is None:
                continue
            values = values or candidate
            if predicate(candidate):
                return candidate
        if time.monotonic() > deadline:
            raise TimeoutError(f'diagnostics never matched within {timeout_s} s; last: {values}')
        values = None
        time.sleep(0.1)


def is_node_status(status) -> bool:
    """Tell this node's DiagnosticStatus from other publishers' on /diagnostics."""
    return status.name.startswith(NODE_STATUS_PREFIX)


def status_values(status) -> Dict[str, str]:
    """Key/values of one status, plus ``level`` and ``message``."""
    level = (int.from_bytes(status.level, 'little') if isinstance(status.level, bytes)
             else status.level)
    return dict({item.key: item.value for item in status.values}, level=str(level),
                message=status.message)


def node_status_values(array) -> Optional[Dict[str, str]]:
    """Key/values of the node's own status in one DiagnosticArray (its first), if any."""
    return next((status_values(status) for status in array.status if is_node_status(status)),
                None)


def latest_diagnostics(client: GraphClient) -> Optional[Dict[str, str]]:
    """Key/values (plus ``level`` and ``message``) of the newest node status, if any."""
    for array in reversed(client.messages('/diagnostics')):
        values = node_status_values(array)
        if values is not None:
            return values
    return None


def collect_stage_means(client: GraphClient, published_before: int = 0) -> Dict[str, float]:
    """Return the whole-run mean (ms) per node stage: per-period means, frame-weighted.

    /diagnostics reports each stage's mean over one diagnostic period; weighting each period by
    the frames it published gives the mean over every frame the client saw reported. Only the
    node's own statuses count (other nodes publish /diagnostics too); ``published_before`` is
    the node's ``frames published`` when the client's recording started.
    """
    totals: Dict[str, float] = {}
    frames: Dict[str, int] = {}
    previous = published_before
    for values in ({item.key: item.value for item in status.values}
                   for array in client.messages('/diagnostics') for status in array.status
                   if is_node_status(status)):
        published = int(values.get('frames published', previous))
        count, previous = published - previous, published
        for key in STAGE_KEYS:
            if count > 0 and f'{key} mean (ms)' in values:
                totals[key] = totals.get(key, 0.0) + count * float(values[f'{key} mean (ms)'])
                frames[key] = frames.get(key, 0) + count
    return {key: totals[key] / frames[key] for key in STAGE_KEYS if key in totals}
