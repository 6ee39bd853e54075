"""Result messages as ``rosbags`` Jazzy dataclasses, serialized to CDR for the output bag.

The node builds the same messages with rclpy (ros/conversions.py, ros/messages.py); the bag
tool must run without a ROS install, so it builds ``rosbags`` dataclasses instead. A test
serializes both and compares the bytes, so the two cannot drift apart.
"""

from typing import Tuple

from affordance_grounding.ros.conversions import ENCODINGS, HOST_IS_BIGENDIAN, ImageConversionError
import numpy as np
from rosbags.typesys import get_typestore, Stores
from rosbags.typesys.store import Typestore

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
STRING = 'std_msgs/msg/String'
POINT_STAMPED = 'geometry_msgs/msg/PointStamped'
MARKER_ARRAY = 'visualization_msgs/msg/MarkerArray'
# The grasp markers of ros/messages.py: namespace, sphere diameter, text height (metres).
MARKER_NAMESPACE = 'affordance_grasp'
SPHERE_DIAMETER_M = 0.03
TEXT_HEIGHT_M = 0.03
_BASE_DEFAULTS = {'string': '', 'bool': False, 'float32': 0.0, 'float64': 0.0}
_NODE_BASE, _NODE_NAME, _NODE_ARRAY, _NODE_SEQUENCE = 1, 2, 3, 4  # rosbags Nodetype values


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
    if kind == _NODE_BASE:
        return _BASE_DEFAULTS.get(detail[0], 0)
    if kind == _NODE_NAME:
        return build_default_message(typestore, detail)
    element, length = detail
    if element[0] == _NODE_BASE and element[1][0] not in ('string', 'bool'):
        return np.zeros(length if kind == _NODE_ARRAY else 0, dtype=element[1][0])
    if kind == _NODE_ARRAY:
        return [_default_value(typestore, element) for _ in range(length)]
    return []


def copy_header(typestore: Typestore, header):
    """Copy a header (stamp and frame_id) from any bag's message into a Jazzy header."""
    stamp = typestore.types['builtin_interfaces/msg/Time'](sec=int(header.stamp.sec),
                                                           nanosec=int(header.stamp.nanosec))
    return typestore.types['std_msgs/msg/Header'](stamp=stamp, frame_id=str(header.frame_id))


def to_image_msg(typestore: Typestore, array_: np.ndarray, encoding: str, header):
    """Encode an array as ``sensor_msgs/Image`` like ``ros.conversions.array_to_image_msg``.

    Raises:
        ImageConversionError: If the encoding is unsupported or the array does not fit it.
    """
    if encoding not in ENCODINGS:
        raise ImageConversionError(f'unsupported image encoding {encoding!r}')
    dtype, channels = ENCODINGS[encoding]
    array_ = np.ascontiguousarray(array_)
    expected_ndim = 2 if channels == 1 else 3
    if (array_.dtype != dtype or array_.ndim != expected_ndim
            or (channels > 1 and array_.shape[2] != channels) or 0 in array_.shape):
        raise ImageConversionError(f'{encoding} needs a non-empty {expected_ndim}-D {dtype} '
                                   f'array with {channels} channel(s), got {array_.shape} '
                                   f'{array_.dtype}')
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


def to_grasp_markers(typestore: Typestore, header, xyz_m: Tuple[float, float, float],
                     label: str):
    """Build a sphere at the grasp point and the label above it (fixed ids: each replaces)."""
    marker_type = typestore.types['visualization_msgs/msg/Marker']
    x, y, z = (float(value) for value in xyz_m)
    sphere = build_default_message(typestore, 'visualization_msgs/msg/Marker')
    sphere.header, sphere.ns, sphere.id = copy_header(typestore, header), MARKER_NAMESPACE, 0
    sphere.type, sphere.action = marker_type.SPHERE, marker_type.ADD
    sphere.pose.position.x, sphere.pose.position.y, sphere.pose.position.z = x, y, z
    sphere.pose.orientation.w = 1.0
    sphere.scale.x = sphere.scale.y = sphere.scale.z = SPHERE_DIAMETER_M
    sphere.color.r, sphere.color.g, sphere.color.b, sphere.color.a = 1.0, 0.2, 0.1, 0.9
    text = build_default_message(typestore, 'visualization_msgs/msg/Marker')
    text.header, text.ns, text.id = copy_header(typestore, header), MARKER_NAMESPACE, 1
    text.type, text.action, text.text = marker_type.TEXT_VIEW_FACING, marker_type.ADD, label
    text.pose.position.x, text.pose.position.z = x, z
    text.pose.position.y = y - 2 * SPHERE_DIAMETER_M  # optical y points down: above the sphere
    text.pose.orientation.w = 1.0
    text.scale.z = TEXT_HEIGHT_M
    text.color.r = text.color.g = text.color.b = text.color.a = 1.0
    return typestore.types[MARKER_ARRAY](markers=[sphere, text])
