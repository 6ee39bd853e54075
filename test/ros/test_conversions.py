"""Image message <-> numpy conversions on hand-built messages with known answers."""

import array
import sys
import types

from affordance_grounding.perception.image_codecs import (
    ENCODINGS, image_msg_to_array, image_msg_to_rgb, ImageConversionError, to_rgb)
from affordance_grounding.ros.conversions import array_to_image_msg
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

pytestmark = pytest.mark.ros


def make_msg(encoding, height, width, data, step, is_bigendian=False):
    """Build an Image message from raw bytes, as a camera driver would."""
    msg = Image(height=height, width=width, encoding=encoding, step=step,
                is_bigendian=is_bigendian)
    msg.data = array.array('B', bytes(data))
    return msg


def make_header():
    header = Header(frame_id='camera_color_optical_frame')
    header.stamp.sec = 1234
    header.stamp.nanosec = 567
    return header


def sample_array(encoding, height=3, width=4):
    """Return a deterministic array of the encoding's dtype and channel count."""
    dtype, channels = ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    values = np.arange(int(np.prod(shape))).reshape(shape)
    if dtype == np.uint8:
        return (values % 251).astype(dtype)
    if dtype == np.uint16:
        return (values * 997 + 258).astype(dtype)
    return (values * 0.25 - 1.5).astype(dtype)


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_array_to_image_msg_round_trips_every_encoding(encoding):
    original = sample_array(encoding)
    msg = array_to_image_msg(original, encoding, make_header())
    decoded, decoded_encoding = image_msg_to_array(msg)
    assert decoded_encoding == encoding
    assert decoded.dtype == original.dtype
    np.testing.assert_array_equal(decoded, original)
    assert msg.step == original.shape[1] * original.itemsize * (
        1 if original.ndim == 2 else original.shape[2])


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_image_msg_to_array_drops_row_padding(encoding):
    original = sample_array(encoding, height=3, width=5)
    row_bytes = original[0].nbytes
    padding = 3
    data = b''.join(row.tobytes() + b'\xee' * padding for row in original)
    msg = make_msg(encoding, 3, 5, data, row_bytes + padding,
                   is_bigendian=sys.byteorder == 'big')
    decoded, _ = image_msg_to_array(msg)
    np.testing.assert_array_equal(decoded, original)
    assert decoded.flags.c_contiguous and decoded.flags.writeable


@pytest.mark.parametrize('big_endian', [True, False])
def test_image_msg_to_array_reads_16uc1_in_either_byte_order(big_endian):
    values = np.array([[1, 258], [513, 65535]], dtype=np.uint16)
    wire = values.astype('>u2' if big_endian else '<u2')
    msg = make_msg('16UC1', 2, 2, wire.tobytes(), 4, is_bigendian=big_endian)
    decoded, _ = image_msg_to_array(msg)
    assert decoded.dtype == np.uint16 and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, values)


@pytest.mark.parametrize('big_endian', [True, False])
def test_image_msg_to_array_reads_32fc1_in_either_byte_order_with_padding(big_endian):
    values = np.array([[1.5, -2.25, np.inf], [0.0, 3.0e-3, 7.0]], dtype=np.float32)
    wire = values.astype('>f4' if big_endian else '<f4')
    data = b''.join(row.tobytes() + b'\x00' * 4 for row in wire)
    msg = make_msg('32FC1', 2, 3, data, 16, is_bigendian=big_endian)
    decoded, _ = image_msg_to_array(msg)
    assert decoded.dtype == np.float32 and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, values)


def test_image_msg_to_array_reads_known_bgr8_pixels():
    msg = make_msg('bgr8', 1, 2, bytes([10, 20, 30, 40, 50, 60]), 6)
    decoded, encoding = image_msg_to_array(msg)
    assert encoding == 'bgr8'
    np.testing.assert_array_equal(decoded, [[[10, 20, 30], [40, 50, 60]]])
    np.testing.assert_array_equal(to_rgb(decoded, encoding), [[[30, 20, 10], [60, 50, 40]]])


def test_image_msg_to_array_ignores_extra_trailing_bytes():
    msg = make_msg('mono8', 1, 2, bytes([7, 9, 1, 1, 1]), 2)
    np.testing.assert_array_equal(image_msg_to_array(msg)[0], [[7, 9]])


@pytest.mark.parametrize('encoding, pixel, expected', [
    ('rgb8', [1, 2, 3], [1, 2, 3]),
    ('bgr8', [1, 2, 3], [3, 2, 1]),
    ('rgba8', [1, 2, 3, 4], [1, 2, 3]),
    ('bgra8', [1, 2, 3, 4], [3, 2, 1]),
    ('mono8', 5, [5, 5, 5]),
])
def test_to_rgb_gives_rgb_uint8(encoding, pixel, expected):
    _, channels = ENCODINGS[encoding]
    shape = (2, 2) if channels == 1 else (2, 2, channels)
    image = np.broadcast_to(np.array(pixel, dtype=np.uint8), shape).copy()
    rgb = to_rgb(image, encoding)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[1, 1], expected)


def test_image_msg_to_rgb_converts_bgra8_message():
    msg = make_msg('bgra8', 1, 1, bytes([9, 8, 7, 255]), 4)
    np.testing.assert_array_equal(image_msg_to_rgb(msg), [[[7, 8, 9]]])


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1'])
def test_to_rgb_rejects_depth_encodings(encoding):
    with pytest.raises(ImageConversionError, match='cannot convert .* to RGB'):
        to_rgb(sample_array(encoding), encoding)


def test_image_msg_to_array_rejects_unsupported_encoding_listing_supported():
    msg = make_msg('yuv422', 2, 2, bytes(8), 4)
    with pytest.raises(ImageConversionError) as error:
        image_msg_to_array(msg)
    assert isinstance(error.value, ValueError)
    assert "'yuv422'" in str(error.value)
    for encoding in ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', '16UC1', '32FC1'):
        assert encoding in str(error.value)


def test_image_msg_to_array_rejects_short_data():
    msg = make_msg('rgb8', 2, 2, bytes(11), 6)
    with pytest.raises(ImageConversionError, match=r'11 bytes, fewer than height\*step = 2\*6'):
        image_msg_to_array(msg)


def test_image_msg_to_array_rejects_step_smaller_than_row():
    msg = make_msg('16UC1', 2, 3, bytes(20), 5)
    with pytest.raises(ImageConversionError, match=r'step 5 is smaller than .* = 3\*1\*2 = 6'):
        image_msg_to_array(msg)


@pytest.mark.parametrize('height, width', [(0, 4), (4, 0), (0, 0)])
def test_image_msg_to_array_rejects_zero_sized_image(height, width):
    msg = make_msg('mono8', height, width, b'', width)
    with pytest.raises(ImageConversionError, match='zero-sized'):
        image_msg_to_array(msg)


def test_image_msg_to_array_rejects_huge_image_by_default_before_reading_data():
    msg = make_msg('mono8', 8193, 8192, b'', 8192)
    with pytest.raises(ImageConversionError, match='more than the limit of 67108864'):
        image_msg_to_array(msg)


def test_image_msg_to_array_honours_configurable_max_pixels():
    msg = make_msg('mono8', 10, 11, bytes(110), 11)
    with pytest.raises(ImageConversionError, match='110 pixels, more than the limit of 100'):
        image_msg_to_array(msg, max_pixels=100)
    assert image_msg_to_array(msg, max_pixels=110)[0].shape == (10, 11)


def test_image_msg_to_array_is_one_converter_even_where_cv_bridge_exists(monkeypatch):
    """The tested numpy decoder is the only path: an importable cv_bridge is never used."""
    class ExplodingBridge:
        def __init__(self):
            raise AssertionError('cv_bridge must not be used')

    monkeypatch.setitem(sys.modules, 'cv_bridge', types.SimpleNamespace(CvBridge=ExplodingBridge))
    decoded, encoding = image_msg_to_array(make_msg('mono8', 1, 2, bytes([1, 2]), 2))
    assert encoding == 'mono8'
    np.testing.assert_array_equal(decoded, [[1, 2]])


def test_array_to_image_msg_copies_header_and_sets_layout():
    header = make_header()
    heatmap = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    msg = array_to_image_msg(heatmap, '32FC1', header)
    header.frame_id = 'changed'
    header.stamp.sec = 1
    assert msg.header.frame_id == 'camera_color_optical_frame'
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 567)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (1, 3, 12, '32FC1')
    assert msg.is_bigendian == (sys.byteorder == 'big')
    assert bytes(msg.data) == heatmap.tobytes()


def test_array_to_image_msg_encodes_mask_and_overlay():
    mask = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    overlay = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    mask_msg = array_to_image_msg(mask, 'mono8', make_header())
    overlay_msg = array_to_image_msg(overlay, 'bgr8', make_header())
    assert (mask_msg.step, bytes(mask_msg.data)) == (2, bytes([0, 255, 255, 0]))
    assert (overlay_msg.step, bytes(overlay_msg.data)) == (6, bytes(range(12)))


def test_array_to_image_msg_encodes_non_contiguous_array():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)[:, ::2]
    msg = array_to_image_msg(image, 'mono8', make_header())
    assert bytes(msg.data) == bytes([0, 2, 4, 6, 8, 10, 12, 14])


@pytest.mark.parametrize('image, encoding, match', [
    (np.zeros((2, 2), np.float64), '32FC1', r'32FC1 needs a non-empty \(H, W\) float32'),
    (np.zeros((2, 2, 3), np.uint8), 'mono8', r'mono8 needs a non-empty \(H, W\) uint8'),
    (np.zeros((2, 2, 4), np.uint8), 'bgr8', r'bgr8 needs a non-empty \(H, W, 3\) uint8'),
    (np.zeros((0, 2), np.uint8), 'mono8', 'non-empty'),
    (np.zeros((2, 2), np.uint8), 'jpeg', "unsupported image encoding 'jpeg'"),
])
def test_array_to_image_msg_rejects_mismatched_arrays(image, encoding, match):
    with pytest.raises(ImageConversionError, match=match):
        array_to_image_msg(image, encoding, make_header())
