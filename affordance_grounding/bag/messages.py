"""Result messages as ``rosbags`` Jazzy dataclasses, serialized to CDR for the output bag.

The node builds the same messages with rclpy (ros/conversions.py, ros/messages.py) from the
same codecs and output layout (perception/); the bag tool must run without a ROS install, so it
builds ``rosbags`` dataclasses instead. A test serializes both and compares the bytes, so the
two cannot drift apart.
"""

from typing import Tuple

from affordance_grounding.perception.frame_processor import Outputs3D
from affordance_grounding.perception.image_codecs import check_array_encoding, HOST_IS_BIGENDIAN
from affordance_grounding.perception.output_layout import (
    ARROW_LENGTH_M, ARROW_SHAFT_M, CLOUD_DTYPE, MARKER_NAMESPACE, PATCH_THICKNESS_M,
    POINT_MARKER_IDS, POSE_MARKER_IDS, SPHERE_DIAMETER_M, TEXT_HEIGHT_M)
import numpy as np
from rosbags.typesys import get_typestore, Stores
from rosbags.typesys.store import Typestore

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
STRING = 'std_msgs/msg/String'
POINT_STAMPED = 'geometry_msgs/msg/PointStamped'
POSE_STAMPED = 'geometry_msgs/msg/PoseStamped'
POINT_CLOUD2 = 'sensor_msgs/msg/PointCloud2'
MARKER_ARRAY = 'visualization_msgs/msg/MarkerArray'
MARKER = 'visualization_msgs/msg/Marker'
DETECTION_2D_ARRAY = 'vision_msgs/msg/Detection2DArray'  # from the input bag's definitions
CLOUD_FIELD_NAMES = CLOUD_DTYPE.names  # float32 each, 16 bytes a point
FLOAT32_DATATYPE = 7  # sensor_msgs/PointField.FLOAT32
_BASE_DEFAULTS = {'string': '', 'bool': False, 'float32': 0.0, 'float64': 0.0}
NODE_BASE, NODE_NAME, NODE_ARRAY, NODE_SEQUENCE = 1, 2, 3, 4  # rosbags Nodetype values


def load_typestore() -> Typestore:
    """Return the ROS 2 Jazzy message types (the distro the node targets)."""
    return get_typestore(Stores.ROS2_JAZZY)


def build_default_message(typestore: Typestore, msgtype: str):
    """Return a message with every field zero, empty or default-constructed, like rclpy's.

    ``rosbags`` dataclasses have no field defaults; a ``Marker`` alone has 19 fields.
    """
    _, fields = typestore.fielddefs[msgtype]
    values = {name: _default_value(typestore, node) for name, node in fields}
    if msgtype == 'geometry_msgs/msg/Quaternion':
        values['w'] = 1.0  # its .msg default (identity); rosbags keeps no field defaults
    return typestore.types[msgtype](**values)


def _default_value(typestore: Typestore, node):
    kind, detail = node
    if kind == NODE_BASE:
        return _BASE_DEFAULTS.get(detail[0], 0)
    if kind == NODE_NAME:
        return build_default_message(typestore, detail)
    element, length = detail
    if element[0] == NODE_BASE and element[1][0] not in ('string', 'bool'):
        return np.zeros(length if kind == NODE_ARRAY else 0, dtype=element[1][0])
    if kind == NODE_ARRAY:
        return [_default_value(typestore, element) for _ in range(length)]
    return []


def copy_header(typestore: Typestore, header):
    """Copy a header (stamp and frame_id) from any bag's message into a Jazzy header."""
    stamp = typestore.types['builtin_interfaces/msg/Time'](sec=int(header.stamp.sec),
                                                           nanosec=int(header.stamp.nanosec))
    return typestore.types['std_msgs/msg/Header'](stamp=stamp, frame_id=str(header.frame_id))


def to_image_msg(typestore: Typestore, array_: np.ndarray, encoding: str, header):
    """Encode an array as ``sensor_msgs/Image`` like the node's ``array_to_image_msg``.

    Raises:
        ImageConversionError: If the encoding is unsupported or the array does not fit it.
    """
    array_ = np.ascontiguousarray(array_)
    dtype, channels = check_array_encoding(array_, encoding)
    height, width = array_.shape[:2]
    return typestore.types[IMAGE](
        header=copy_header(typestore, header), height=height, width=width, encoding=encoding,
        is_bigendian=int(HOST_IS_BIGENDIAN), step=width * channels * dtype.itemsize,
        data=array_.reshape(-1).view(np.uint8))


def to_point_stamped(typestore: Typestore, header, xyz_m: Tuple[float, float, float]):
    """Grasp point in the camera optical frame of ``header`` (stamp copied)."""
    x, y, z = (float(value) for value in xyz_m)
    point = typestore.types['geometry_msgs/msg/Point'](x=x, y=y, z=z)
    return typestore.types[POINT_STAMPED](header=copy_header(typestore, header), point=point)


def to_pose_stamped(typestore: Typestore, header, pose):
    """Stamp a ``geometry.grasp_pose.GraspPose`` with ``header``."""
    msg = build_default_message(typestore, POSE_STAMPED)
    msg.header = copy_header(typestore, header)
    _set_pose(msg.pose, pose.position, pose.quaternion_xyzw)
    return msg


def _set_pose(target, position, quaternion_xyzw) -> None:
    target.position.x, target.position.y, target.position.z = (float(v) for v in position)
    orientation = target.orientation
    orientation.x, orientation.y, orientation.z, orientation.w = (
        float(v) for v in quaternion_xyzw)


def to_point_cloud(typestore: Typestore, header, xyzi: np.ndarray):
    """Unorganised dense cloud of (N, 4) float32 x, y, z, intensity rows (little-endian)."""
    points = np.ascontiguousarray(xyzi, dtype='<f4').reshape(-1, 4)  # (N, 4)
    field_type = typestore.types['sensor_msgs/msg/PointField']
    fields = [field_type(name=name, offset=4 * index, datatype=FLOAT32_DATATYPE, count=1)
              for index, name in enumerate(CLOUD_FIELD_NAMES)]
    return typestore.types[POINT_CLOUD2](
        header=copy_header(typestore, header), height=1, width=len(points), fields=fields,
        is_bigendian=False, point_step=16, row_step=16 * len(points),
        data=points.reshape(-1).view(np.uint8), is_dense=True)


def to_frame_markers(typestore: Typestore, header, outputs: Outputs3D, label: str):
    """Every marker of one 3D frame, as the node publishes them (ros/messages.py).

    What the frame draws, then the deletion of the ids it does not draw
    (:attr:`Outputs3D.deleted_marker_ids`), so that no stale marker stays in RViz.
    """
    markers = []
    if outputs.point_xyz_m is not None:
        markers += to_grasp_markers(typestore, header, outputs.point_xyz_m, label).markers
    if outputs.draws_pose:
        markers += to_grasp_pose_markers(typestore, header, outputs.pose)
    delete = typestore.types[MARKER].DELETE
    markers += [_marker(typestore, header, marker_id, delete)
                for marker_id in outputs.deleted_marker_ids]
    return typestore.types[MARKER_ARRAY](markers=markers)


def _marker(typestore: Typestore, header, marker_id: int, action: int):
    """Build a default marker of the grasp namespace with ``header``, id and ``action``."""
    marker = build_default_message(typestore, MARKER)
    marker.header = copy_header(typestore, header)
    marker.ns, marker.id = MARKER_NAMESPACE, marker_id
    marker.action = action
    return marker


def to_grasp_pose_markers(typestore: Typestore, header, pose) -> list:
    """Arrow along the approach axis and the plane patch (ids 2, 3) of a grasp pose."""
    marker_type = typestore.types[MARKER]
    arrow, patch = (_marker(typestore, header, marker_id, marker_type.ADD)
                    for marker_id in POSE_MARKER_IDS)
    tail = pose.position - ARROW_LENGTH_M * pose.rotation[:, 2]
    point_type = typestore.types['geometry_msgs/msg/Point']
    arrow.type = marker_type.ARROW
    arrow.points = [point_type(x=float(tail[0]), y=float(tail[1]), z=float(tail[2])),
                    point_type(x=float(pose.position[0]), y=float(pose.position[1]),
                               z=float(pose.position[2]))]
    arrow.scale.x, arrow.scale.y, arrow.scale.z = ARROW_SHAFT_M, 2 * ARROW_SHAFT_M, 0.02
    arrow.color.r, arrow.color.g, arrow.color.b, arrow.color.a = 0.1, 0.9, 0.2, 1.0
    patch.type = marker_type.CUBE
    _set_pose(patch.pose, pose.patch_center, pose.quaternion_xyzw)
    patch.scale.x = max(pose.patch_size[0], PATCH_THICKNESS_M)
    patch.scale.y = max(pose.patch_size[1], PATCH_THICKNESS_M)
    patch.scale.z = PATCH_THICKNESS_M
    patch.color.r, patch.color.g, patch.color.b, patch.color.a = 0.2, 0.6, 1.0, 0.4
    return [arrow, patch]


def to_grasp_markers(typestore: Typestore, header, xyz_m: Tuple[float, float, float],
                     label: str):
    """Build a sphere at the grasp point and the label above it (fixed ids: each replaces)."""
    marker_type = typestore.types[MARKER]
    x, y, z = (float(value) for value in xyz_m)
    sphere, text = (_marker(typestore, header, marker_id, marker_type.ADD)
                    for marker_id in POINT_MARKER_IDS)
    sphere.type = marker_type.SPHERE
    sphere.pose.position.x, sphere.pose.position.y, sphere.pose.position.z = x, y, z
    sphere.pose.orientation.w = 1.0
    sphere.scale.x = sphere.scale.y = sphere.scale.z = SPHERE_DIAMETER_M
    sphere.color.r, sphere.color.g, sphere.color.b, sphere.color.a = 1.0, 0.2, 0.1, 0.9
    text.type, text.text = marker_type.TEXT_VIEW_FACING, label
    text.pose.position.x, text.pose.position.z = x, z
    text.pose.position.y = y - 2 * SPHERE_DIAMETER_M  # optical y points down: above the sphere
    text.pose.orientation.w = 1.0
    text.scale.z = TEXT_HEIGHT_M
    text.color.r = text.color.g = text.color.b = text.color.a = 1.0
    return typestore.types[MARKER_ARRAY](markers=[sphere, text])
