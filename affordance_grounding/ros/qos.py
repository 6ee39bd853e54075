"""QoS profiles of the node's topics (docs/ros_interface.md, "Topics") and their log text."""

from rclpy.qos import (
    DurabilityPolicy, HistoryPolicy, qos_profile_system_default, QoSProfile, ReliabilityPolicy)

# Best effort matches both best-effort and reliable cameras; depth 1 keeps only the newest.
SENSOR_DATA = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
RELIABLE = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
# Commands: every one counts (a quick "hold" then "pour" must not lose "hold" in the writer's
# history, which keep-last-1 would); reliable + volatile still matches `ros2 topic pub`.
COMMANDS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
# A detector's boxes: best effort matches reliable and best-effort detectors alike; depth 10
# keeps a burst, since each is needed to pair with its image.
DETECTIONS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)
# Late joiners (RViz, a planner started later) still get the current action.
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
IMAGE_QOS = {'sensor_data': SENSOR_DATA, 'reliable': RELIABLE,
             'system_default': qos_profile_system_default}


def image_qos(name: str) -> QoSProfile:
    """Return a fresh copy of the image-input profile named by the ``image_qos`` parameter."""
    profile = IMAGE_QOS[name]
    return QoSProfile(depth=profile.depth or 1, history=profile.history,
                      reliability=profile.reliability, durability=profile.durability)


def describe_qos(profile: QoSProfile) -> str:
    """``reliability/durability/history(depth)`` for the start-up log."""
    history = profile.history.name.lower()
    if profile.history == HistoryPolicy.KEEP_LAST:
        history += f'({profile.depth})'
    return (f'{profile.reliability.name.lower()}/{profile.durability.name.lower()}/'
            f'{history}')
