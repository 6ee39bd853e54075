"""Results -> ROS messages: grasp point, region cloud, grasp pose, RViz markers, diagnostics.

Pure functions.
"""

import array
from typing import Iterable, Tuple

from affordance_grounding.geometry.grasp_pose import GraspPose
from affordance_grounding.perception.frame_processor import Outputs3D
from affordance_grounding.perception.output_layout import (  # noqa: F401 - CLOUD_DTYPE re-exported
    ARROW_LENGTH_M, ARROW_SHAFT_M, CLOUD_DTYPE, MARKER_NAMESPACE, PATCH_THICKNESS_M,
    SPHERE_DIAMETER_M, TEXT_HEIGHT_M)
from affordance_grounding.ros.conversions import copy_header
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped, Pose, PoseStamped, Quaternion
import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

CLOUD_FIELDS = [PointField(name=name, offset=CLOUD_DTYPE.fields[name][1],
                           datatype=PointField.FLOAT32, count=1) for name in CLOUD_DTYPE.names]
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


def to_point_cloud(header: Header, xyzi: np.ndarray) -> PointCloud2:
    """Build an unorganised cloud (height 1): fields x, y, z, intensity (float32), dense.

    The (N, 4) float32 rows are viewed as a numpy structured array of :data:`CLOUD_DTYPE` and
    copied into the message once (sensor_msgs_py is not installable everywhere, and a
    per-point Python loop would cost milliseconds on a VGA region).

    Args:
        header: Input image header (stamp and optical frame copied).
        xyzi: (N, 4) finite x, y, z in metres and the heatmap value per point.
    """
    records = np.ascontiguousarray(xyzi, dtype=np.float32).view(CLOUD_DTYPE).reshape(-1)
    msg = PointCloud2(header=copy_header(header), height=1, width=len(records),
                      fields=CLOUD_FIELDS, is_bigendian=False, point_step=CLOUD_DTYPE.itemsize,
                      row_step=CLOUD_DTYPE.itemsize * len(records), is_dense=True)
    data = array.array('B')
    data.frombytes(memoryview(records).cast('B'))
    msg.data = data
    return msg


def to_pose(position, quaternion_xyzw) -> Pose:
    """Build a ``geometry_msgs/Pose`` from a position and an (x, y, z, w) quaternion."""
    x, y, z = (float(value) for value in position)
    qx, qy, qz, qw = (float(value) for value in quaternion_xyzw)
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def to_pose_stamped(header: Header, pose: GraspPose) -> PoseStamped:
    """Stamp the grasp pose with ``header`` (its camera optical frame and stamp)."""
    return PoseStamped(header=copy_header(header),
                       pose=to_pose(pose.position, pose.quaternion_xyzw))


def to_frame_markers(header: Header, outputs: Outputs3D, label: str) -> MarkerArray:
    """Every marker of one 3D frame: what it draws, then the deletion of what it does not.

    ``outputs`` decides (:attr:`Outputs3D.deleted_marker_ids`), so that RViz never keeps a
    previous frame's point, label or pose; the bag tool builds the same array.
    """
    markers = []
    if outputs.point_xyz_m is not None:
        markers += to_grasp_markers(header, outputs.point_xyz_m, label).markers
    if outputs.draws_pose:
        markers += to_grasp_pose_markers(header, outputs.pose).markers
    markers += [Marker(header=copy_header(header), ns=MARKER_NAMESPACE, id=marker_id,
                       action=Marker.DELETE) for marker_id in outputs.deleted_marker_ids]
    return MarkerArray(markers=markers)


def to_grasp_pose_markers(header: Header, pose: GraspPose) -> MarkerArray:
    """Draw the grasp pose as an arrow along its approach axis plus the fitted plane patch.

    The arrow ends at the grasp position, pointing along z (into the surface); the patch is a
    thin box spanning the 5th-95th percentiles of the region along x and y. Ids 2 and 3 of the
    grasp namespace, so they replace the previous frame's like the point markers do.
    """
    tail = pose.position - ARROW_LENGTH_M * pose.rotation[:, 2]
    arrow = Marker(header=copy_header(header), ns=MARKER_NAMESPACE, id=2, type=Marker.ARROW,
                   action=Marker.ADD)
    arrow.points = [Point(x=float(tail[0]), y=float(tail[1]), z=float(tail[2])),
                    Point(x=float(pose.position[0]), y=float(pose.position[1]),
                          z=float(pose.position[2]))]
    arrow.pose.orientation.w = 1.0
    arrow.scale.x, arrow.scale.y, arrow.scale.z = ARROW_SHAFT_M, 2 * ARROW_SHAFT_M, 0.02
    arrow.color.r, arrow.color.g, arrow.color.b, arrow.color.a = 0.1, 0.9, 0.2, 1.0
    patch = Marker(header=copy_header(header), ns=MARKER_NAMESPACE, id=3, type=Marker.CUBE,
                   action=Marker.ADD)
    patch.pose = to_pose(pose.patch_center, pose.quaternion_xyzw)
    patch.scale.x = max(pose.patch_size[0], PATCH_THICKNESS_M)
    patch.scale.y = max(pose.patch_size[1], PATCH_THICKNESS_M)
    patch.scale.z = PATCH_THICKNESS_M
    patch.color.r, patch.color.g, patch.color.b, patch.color.a = 0.2, 0.6, 1.0, 0.4
    return MarkerArray(markers=[arrow, patch])


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
