"""Image messages <-> numpy, without cv_bridge and without ROS: the one home of the codecs.

The decoders duck-type the message (``encoding``, ``height``, ``width``, ``step``,
``is_bigendian``, ``data``; ``format`` and ``data`` for a CompressedImage), so the node's rclpy
messages and the bag tool's rosbags messages go through the same code. cv_bridge is not
installable everywhere, built a new ``CvBridge`` per frame, and its path could not be tested
here, while this numpy decoder honours ``step`` and ``is_bigendian`` exactly as cv_bridge does.
Compressed images are decoded with OpenCV (``cv2.imdecode``), which is what image_transport's
compressed plugin uses.

Pure functions: no node, no logging. Every malformed message raises
:class:`ImageConversionError` (a ``ValueError``) saying what is wrong and what was expected,
so a per-frame caller can log one throttled warning and drop the frame.
"""

import sys
from typing import Dict, Tuple

import cv2
import numpy as np

# encoding -> (dtype, channels); the supported inputs of docs/ros_interface.md.
ENCODINGS: Dict[str, Tuple[np.dtype, int]] = {
    'rgb8': (np.dtype(np.uint8), 3),
    'bgr8': (np.dtype(np.uint8), 3),
    'rgba8': (np.dtype(np.uint8), 4),
    'bgra8': (np.dtype(np.uint8), 4),
    'mono8': (np.dtype(np.uint8), 1),
    'mono16': (np.dtype(np.uint16), 1),
    '16UC1': (np.dtype(np.uint16), 1),
    '32FC1': (np.dtype(np.float32), 1),
}
COLOUR_ENCODINGS: Tuple[str, ...] = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')
# Conversions to RGB; None means the array is already RGB.
_TO_RGB_CODES = {'rgb8': None, 'bgr8': cv2.COLOR_BGR2RGB, 'rgba8': cv2.COLOR_RGBA2RGB,
                 'bgra8': cv2.COLOR_BGRA2RGB, 'mono8': cv2.COLOR_GRAY2RGB}
DEFAULT_MAX_PIXELS = 8192 * 8192
HOST_IS_BIGENDIAN = sys.byteorder == 'big'


class ImageConversionError(ValueError):
    """A ``sensor_msgs/Image`` that cannot be converted (encoding, sizes or data length)."""


class CompressedImageError(ImageConversionError):
    """A ``CompressedImage`` that cannot be decoded; ``kind`` names the problem for counting.

    Kinds: ``empty``, ``unknown_format`` (neither jpeg nor png, or a compressedDepth image),
    ``truncated`` (the end marker is missing), ``corrupt`` (OpenCV cannot decode it) and
    ``too_large``.
    """

    def __init__(self, kind: str, message: str):
        """Remember the kind next to the message."""
        super().__init__(message)
        self.kind = kind


def check_image_msg(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tuple[np.dtype, int]:
    """Check encoding, sizes, step and data length of an image message.

    Args:
        msg: The image message.
        max_pixels: Largest accepted ``height * width``.

    Returns:
        (dtype, channels) of the encoding.

    Raises:
        ImageConversionError: On the first problem found.
    """
    if msg.encoding not in ENCODINGS:
        raise ImageConversionError(f'unsupported image encoding {msg.encoding!r}; supported: '
                                   f'{", ".join(ENCODINGS)}')
    dtype, channels = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f'zero-sized image ({width}x{height}, width x height)')
    if height * width > max_pixels:
        raise ImageConversionError(f'image {width}x{height} has {height * width} pixels, more '
                                   f'than the limit of {max_pixels}')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(f'step {step} is smaller than width*channels*bytes = '
                                   f'{width}*{channels}*{dtype.itemsize} = {row_bytes} '
                                   f'for {msg.encoding}')
    if len(msg.data) < height * step:
        raise ImageConversionError(f'data has {len(msg.data)} bytes, fewer than height*step = '
                                   f'{height}*{step} = {height * step}')
    return dtype, channels


def image_msg_to_array(msg, max_pixels: int = DEFAULT_MAX_PIXELS
                       ) -> Tuple[np.ndarray, str]:
    """Decode an image message into a host-order numpy array that owns its memory.

    Honours ``step`` (row padding) and ``is_bigendian``, as cv_bridge does.

    Args:
        msg: ``sensor_msgs/Image`` in one of :data:`ENCODINGS`.
        max_pixels: Largest accepted ``height * width``.

    Returns:
        (array, encoding): (H, W) for one channel, (H, W, C) otherwise, dtype from the
        encoding (uint8, uint16 or float32), channels in the message's order.

    Raises:
        ImageConversionError: If the message is malformed or the encoding is unsupported.
    """
    dtype, channels = check_image_msg(msg, max_pixels)
    return _decode_with_numpy(msg, dtype, channels), msg.encoding


def _decode_with_numpy(msg, dtype: np.dtype, channels: int) -> np.ndarray:
    """Decode a checked message: cut row padding, then fix the byte order to the host's."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=height * step)
    rows = raw.reshape(height, step)[:, :width * channels * dtype.itemsize]  # (H, row bytes)
    wire_dtype = dtype.newbyteorder('>' if msg.is_bigendian else '<')
    pixels = np.ascontiguousarray(rows).view(wire_dtype)  # (H, W*C) in the wire byte order
    pixels = pixels.astype(dtype.newbyteorder('='), copy=True)  # host order, own memory
    shape = (height, width) if channels == 1 else (height, width, channels)
    return pixels.reshape(shape)


def to_rgb(array_: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a decoded colour image to (H, W, 3) uint8 RGB (alpha dropped, mono repeated).

    Raises:
        ImageConversionError: If ``encoding`` is not a colour encoding.
    """
    if encoding not in _TO_RGB_CODES:
        raise ImageConversionError(f'cannot convert {encoding!r} to RGB; colour encodings: '
                                   f'{", ".join(COLOUR_ENCODINGS)}')
    code = _TO_RGB_CODES[encoding]
    return np.ascontiguousarray(array_) if code is None else cv2.cvtColor(array_, code)


def image_msg_to_rgb(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a colour image message straight to (H, W, 3) uint8 RGB."""
    array_, encoding = image_msg_to_array(msg, max_pixels)
    return to_rgb(array_, encoding)


_JPEG_START, _JPEG_END = b'\xff\xd8\xff', b'\xff\xd9'
_PNG_START, _PNG_END = b'\x89PNG\r\n\x1a\n', b'IEND\xaeB`\x82'


def compressed_image_msg_to_rgb(msg,
                                max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a jpeg or png ``CompressedImage`` (image_transport ``compressed``) to RGB.

    The format is read from the data's signature, not from ``msg.format`` (``jpeg``, ``png``,
    ``rgb8; jpeg compressed bgr8``, ...), which drivers fill inconsistently. libjpeg decodes a
    cut-off jpeg into a grey-bottomed image without an error, so the end markers are checked
    first. EXIF orientation is ignored: the pixels are the camera's, like a raw image's.

    Args:
        msg: The message; colour or grey jpeg/png (alpha is dropped, grey repeated).
        max_pixels: Largest accepted ``height * width``.

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        CompressedImageError: With ``kind`` as listed on the class.
    """
    data = bytes(msg.data)
    if not data:
        raise CompressedImageError('empty', 'compressed image has no data')
    if 'compresseddepth' in msg.format.lower():
        raise CompressedImageError('unknown_format', f'format {msg.format!r} is a depth image; '
                                   'the colour input takes jpeg or png (depth stays raw)')
    if data.startswith(_JPEG_START):
        # Cameras may pad after the end marker; it must be among the last bytes.
        if _JPEG_END not in data[-64:]:
            raise CompressedImageError('truncated', f'jpeg of {len(data)} bytes has no end '
                                       'marker (truncated)')
    elif data.startswith(_PNG_START):
        if _PNG_END not in data[-64:]:
            raise CompressedImageError('truncated', f'png of {len(data)} bytes has no IEND '
                                       'chunk (truncated)')
    else:
        raise CompressedImageError('unknown_format', f'data is neither jpeg nor png (format '
                                   f'{msg.format!r}, first bytes {data[:4].hex()})')
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8),
                       cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise CompressedImageError('corrupt', f'OpenCV cannot decode this {msg.format or "image"}'
                                   f' of {len(data)} bytes (corrupt data)')
    height, width = bgr.shape[:2]
    if height * width > max_pixels:
        raise CompressedImageError('too_large', f'image {width}x{height} has {height * width} '
                                   f'pixels, more than the limit of {max_pixels}')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def colour_msg_to_rgb(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a raw ``Image`` or a ``CompressedImage`` colour frame to (H, W, 3) uint8 RGB."""
    if hasattr(msg, 'format'):  # a CompressedImage, from rclpy or from a bag (rosbags)
        return compressed_image_msg_to_rgb(msg, max_pixels)
    return image_msg_to_rgb(msg, max_pixels)


def check_array_encoding(array_: np.ndarray, encoding: str) -> Tuple[np.dtype, int]:
    """Check that an array can be sent as ``encoding``; return its (dtype, channels).

    Raises:
        ImageConversionError: If the encoding is unsupported or the array does not fit it.
    """
    if encoding not in ENCODINGS:
        raise ImageConversionError(f'unsupported image encoding {encoding!r}; supported: '
                                   f'{", ".join(ENCODINGS)}')
    dtype, channels = ENCODINGS[encoding]
    expected_ndim = 2 if channels == 1 else 3
    if (array_.dtype != dtype or array_.ndim != expected_ndim
            or (channels > 1 and array_.shape[2] != channels) or 0 in array_.shape):
        expected = '(H, W)' if channels == 1 else f'(H, W, {channels})'
        raise ImageConversionError(f'{encoding} needs a non-empty {expected} {dtype} array, got '
                                   f'{array_.shape} {array_.dtype}')
    return dtype, channels
