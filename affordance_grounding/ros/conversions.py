"""numpy -> ``sensor_msgs/Image`` with rclpy's message classes (the decoders are ROS-free).

Decoding lives in :mod:`affordance_grounding.perception.image_codecs`, shared with the bag
tool; the node builds its output images here.
"""

import array

from affordance_grounding.perception.image_codecs import check_array_encoding, HOST_IS_BIGENDIAN
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header


def copy_header(header: Header) -> Header:
    """Return a copy of a header (stamp and frame_id), never a new ``now()`` stamp."""
    copied = Header(frame_id=header.frame_id)
    copied.stamp.sec = header.stamp.sec
    copied.stamp.nanosec = header.stamp.nanosec
    return copied


def array_to_image_msg(array_: np.ndarray, encoding: str, header: Header) -> Image:
    """Encode an array as an image message carrying a copy of the input image's header.

    Args:
        array_: (H, W) for 32FC1 heatmaps, mono8 masks and other one-channel encodings;
            (H, W, C) for colour (e.g. a bgr8 overlay). The dtype must match the encoding.
        encoding: One of :data:`ENCODINGS`.
        header: Header of the input image; stamp and frame_id are copied.

    Returns:
        The message, host byte order, unpadded rows.

    Raises:
        ImageConversionError: If the encoding is unsupported or the array does not fit it.
    """
    array_ = np.asarray(array_)
    dtype, channels = check_array_encoding(array_, encoding)
    height, width = array_.shape[:2]
    msg = Image(header=copy_header(header), height=height, width=width, encoding=encoding,
                is_bigendian=HOST_IS_BIGENDIAN, step=width * channels * dtype.itemsize)
    msg.data = array.array('B', np.ascontiguousarray(array_).tobytes())
    return msg
