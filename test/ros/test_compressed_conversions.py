"""Decoding ``sensor_msgs/CompressedImage`` (jpeg, png) and its failure kinds (no DDS)."""

from affordance_grounding.perception.image_codecs import (
    colour_msg_to_rgb, compressed_image_msg_to_rgb, CompressedImageError)
import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image


def compressed(rgb: np.ndarray, extension: str, *params) -> CompressedImage:
    ok, data = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
    assert ok
    return CompressedImage(format=f'rgb8; {extension[1:]} compressed bgr8', data=data.tobytes())


@pytest.fixture(scope='module')
def photo():
    """Return a smooth colour image with edges (jpeg error depends on content)."""
    y, x = np.mgrid[0:120, 0:160]
    rgb = np.stack([x * 255 // 159, y * 255 // 119, (x + y) % 256], axis=-1).astype(np.uint8)
    cv2.rectangle(rgb, (40, 30), (100, 90), (250, 20, 30), -1)
    return rgb


def test_png_decodes_to_the_exact_pixels(photo):
    np.testing.assert_array_equal(compressed_image_msg_to_rgb(compressed(photo, '.png')), photo)


def test_jpeg_quality_95_decodes_close(photo):
    msg = compressed(photo, '.jpg', cv2.IMWRITE_JPEG_QUALITY, 95)
    decoded = compressed_image_msg_to_rgb(msg)
    reference = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded, cv2.cvtColor(reference, cv2.COLOR_BGR2RGB))
    error = np.abs(decoded.astype(int) - photo.astype(int))
    assert error.mean() < 2.5  # 1.65 measured: chroma subsampling at the rectangle's edges


def test_grey_png_and_png_with_alpha_become_rgb(photo):
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    ok, data = cv2.imencode('.png', grey)
    decoded = compressed_image_msg_to_rgb(CompressedImage(format='png', data=data.tobytes()))
    np.testing.assert_array_equal(decoded, np.repeat(grey[..., None], 3, axis=2))
    bgra = cv2.cvtColor(photo, cv2.COLOR_RGB2BGRA)
    ok, data = cv2.imencode('.png', bgra)
    decoded = compressed_image_msg_to_rgb(CompressedImage(format='png', data=data.tobytes()))
    np.testing.assert_array_equal(decoded, photo)


def test_format_string_does_not_decide_the_decoder(photo):
    msg = compressed(photo, '.png')
    msg.format = 'jpeg'  # a driver that always writes jpeg
    np.testing.assert_array_equal(compressed_image_msg_to_rgb(msg), photo)


def test_jpeg_with_padding_after_the_end_marker_decodes(photo):
    msg = compressed(photo, '.jpg', cv2.IMWRITE_JPEG_QUALITY, 95)
    msg.data = bytes(msg.data) + bytes(16)
    assert compressed_image_msg_to_rgb(msg).shape == photo.shape


@pytest.mark.parametrize('extension', ['.jpg', '.png'])
def test_truncated_data_is_reported_as_truncated(photo, extension):
    msg = compressed(photo, extension)
    msg.data = bytes(msg.data)[:len(msg.data) // 2]
    with pytest.raises(CompressedImageError, match='truncated') as raised:
        compressed_image_msg_to_rgb(msg)
    assert raised.value.kind == 'truncated'


@pytest.mark.parametrize('make, kind', [
    (lambda m: CompressedImage(format='jpeg', data=b''), 'empty'),
    (lambda m: CompressedImage(format='tiff', data=b'II*\x00' + bytes(100)), 'unknown_format'),
    (lambda m: CompressedImage(format='16UC1; compressedDepth png', data=m.data),
     'unknown_format'),
    (lambda m: CompressedImage(format='png', data=bytes(m.data)[:40] + bytes(200)
                               + bytes(m.data)[-12:]), 'corrupt'),
])
def test_bad_messages_raise_by_kind(photo, make, kind):
    with pytest.raises(CompressedImageError) as raised:
        compressed_image_msg_to_rgb(make(compressed(photo, '.png')))
    assert raised.value.kind == kind and str(raised.value)


def test_max_pixels_applies(photo):
    with pytest.raises(CompressedImageError, match='more than the limit') as raised:
        compressed_image_msg_to_rgb(compressed(photo, '.png'), max_pixels=100)
    assert raised.value.kind == 'too_large'


def test_colour_msg_to_rgb_dispatches_on_the_message_type(photo):
    raw = Image(height=120, width=160, encoding='rgb8', step=480, data=photo.tobytes())
    np.testing.assert_array_equal(colour_msg_to_rgb(raw), photo)
    np.testing.assert_array_equal(colour_msg_to_rgb(compressed(photo, '.png')), photo)
