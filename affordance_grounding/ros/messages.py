"""Results -> ROS messages: grasp point, RViz markers, diagnostics. Pure functions."""

from typing import Iterable, Tuple

from affordance_grounding.ros.conversions import copy_header
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

MARKER_NAMESPACE = 'affordance_grasp'
SPHERE_DIAMETER_M = 0.03
TEXT_HEIGHT_M = 0.03
DIAGNOSTIC_LEVELS = {'ok': DiagnosticStatus.OK, 'warn': DiagnosticStatus.WARN,
                     'error': DiagnosticStatus.ERROR, 'stale': DiagnosticStatus.STALE}


def to_point_stamped(header: Header, xyz_m: Tuple[float, float, float]) -> PointStamped:
    """Grasp point in the camera optical frame of ``header`` (stamp copied)."""
    x, y, z = (float(value) for value in xyz_m)
    return PointStamped(header=copy_header(header), point=Point(x=x, y=y, z=z))


def to_grasp_markers(header: Header, xyz_m: Tuple[float, float, float],
                     label: str) -> MarkerArray:
    """Build a sphere at the grasp point and the action label above it, for RViz.

    The markers live as long as the next update (lifetime 0 = until replaced): ids are fixed,
    so each frame replaces the previous pair instead of piling up.
    """
    x, y, z = (float(value) for value in xyz_m)
    sphere = Marker(header=copy_header(header), ns=MARKER_NAMESPACE, id=0, type=Marker.SPHERE,
                    action=Marker.ADD)
    sphere.pose.position = Point(x=x, y=y, z=z)
    sphere.pose.orientation.w = 1.0
    sphere.scale.x = sphere.scale.y = sphere.scale.z = SPHERE_DIAMETER_M
    sphere.color.r, sphere.color.g, sphere.color.b, sphere.color.a = 1.0, 0.2, 0.1, 0.9
    text = Marker(header=copy_header(header), ns=MARKER_NAMESPACE, id=1,
                  type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, text=label)
    text.pose.position = Point(x=x, y=y - 2 * SPHERE_DIAMETER_M, z=z)  # optical y points down
    text.pose.orientation.w = 1.0
    text.scale.z = TEXT_HEIGHT_M
    text.color.r = text.color.g = text.color.b = text.color.a = 1.0
    return MarkerArray(markers=[sphere, text])


def to_diagnostic_array(stamp, name: str, hardware_id: str, level: str, message: str,
                        values: Iterable[Tuple[str, str]]) -> DiagnosticArray:
    """One ``DiagnosticStatus`` wrapped in an array, as diagnostic_updater would publish it.

    Args:
        stamp: ``builtin_interfaces/Time`` of the message (the node clock's now).
        name: Status name, e.g. ``affordance_grounding: inference``.
        hardware_id: The device the model runs on.
        level: ``ok``, ``warn``, ``error`` or ``stale``.
        message: One-line summary.
        values: (key, value) strings.
    """
    status = DiagnosticStatus(level=DIAGNOSTIC_LEVELS[level], name=name, message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=key, value=value) for key, value in values])
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
