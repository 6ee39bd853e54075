"""Stand-ins for a publisher and a node, to drive the inference worker without DDS."""

from affordance_grounding.ros.conversions import array_to_image_msg
import numpy as np
import rclpy
from rclpy.clock import Clock, ClockType
from std_msgs.msg import Header


class FakePublisher:
    """Records what is published; reports a fixed number of subscribers."""

    def __init__(self, subscribers=1):
        """Start with nothing sent."""
        self.sent = []
        self.subscribers = subscribers

    def publish(self, msg):
        """Record ``msg``."""
        self.sent.append(msg)

    def get_subscription_count(self):
        """Return the fixed subscriber count."""
        return self.subscribers


class FakeNode:
    """The clock and logger the worker asks its node for; logs are kept."""

    def __init__(self):
        """Use the system clock; no logs yet."""
        self.clock = Clock(clock_type=ClockType.SYSTEM_TIME)
        self.logged = []

    def get_clock(self):
        """Return the system clock."""
        return self.clock

    def get_logger(self):
        """Return this object, which records warnings and errors."""
        return self

    def warning(self, text):
        """Record a log line."""
        self.logged.append(text)

    error = warning


def image_msg(node: FakeNode, age_s: float = 0.0):
    """Return a small black rgb8 image stamped ``age_s`` before the node's clock."""
    header = Header(frame_id='cam')
    header.stamp = rclpy.time.Time(
        nanoseconds=node.clock.now().nanoseconds - int(age_s * 1e9)).to_msg()
    return array_to_image_msg(np.zeros((30, 40, 3), np.uint8), 'rgb8', header)
