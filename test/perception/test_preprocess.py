"""Test-time preprocessing (docs/method.md): 224x224 PIL-like bilinear resize, ImageNet stats."""

from affordance_grounding.config import IMAGENET_MEAN, IMAGENET_STD
from affordance_grounding.perception.preprocess import ImagePreprocessor
import numpy as np
from PIL import Image
import pytest
import skimage.data
import torch


@pytest.fixture(scope='module')
def preprocessor():
    """Return the SelectiveCL test transform: 224 px, ImageNet mean and std."""
    return ImagePreprocessor(224, IMAGENET_MEAN, IMAGENET_STD)


def _pil_reference(rgb):
    """PIL resize to 224x224 (bilinear), to [0, 1], per-channel normalisation; (3, S, S)."""
    resized = np.asarray(Image.fromarray(rgb).resize((224, 224), Image.BILINEAR))
    scaled = resized.astype(np.float64) / 255.0
    return ((scaled - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)


def test_preprocess_returns_float32_batch_of_one(preprocessor):
    rgb = np.zeros((37, 91, 3), dtype=np.uint8)
    tensor = preprocessor(rgb)
    assert tensor.shape == (1, 3, 224, 224)
    assert tensor.dtype == torch.float32


def test_preprocess_constant_colour_gives_hand_normalised_values(preprocessor):
    rgb = np.empty((50, 80, 3), dtype=np.uint8)
    rgb[...] = (255, 0, 128)
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    tensor = preprocessor(rgb)
    for channel in range(3):
        torch.testing.assert_close(tensor[0, channel],
                                   torch.full((224, 224), expected[channel]),
                                   atol=1e-5, rtol=0)


def test_preprocess_matches_pil_bilinear_resize(preprocessor):
    rgb = skimage.data.coffee()  # (400, 600, 3) uint8 photo
    actual = preprocessor(rgb)[0].double().numpy()
    expected = _pil_reference(rgb)
    grey_levels = np.abs(actual - expected) * np.array(IMAGENET_STD)[:, None, None] * 255.0
    assert grey_levels.max() <= 2.0 + 1e-4
    assert grey_levels.mean() < 0.5


def test_preprocess_writes_into_given_buffer(preprocessor):
    rgb = skimage.data.coffee()
    buffer = torch.zeros(1, 3, 224, 224)
    address = buffer.data_ptr()
    result = preprocessor(rgb, out=buffer)
    assert result is buffer
    assert buffer.data_ptr() == address
    torch.testing.assert_close(buffer, preprocessor(rgb), atol=0, rtol=0)


def test_preprocess_accepts_non_contiguous_views(preprocessor):
    rgb = skimage.data.coffee()
    flipped = rgb[:, ::-1]
    torch.testing.assert_close(preprocessor(flipped),
                               preprocessor(np.ascontiguousarray(flipped)), atol=0, rtol=0)


@pytest.mark.parametrize('image', [
    np.zeros((10, 10), dtype=np.uint8),
    np.zeros((10, 10, 4), dtype=np.uint8),
    np.zeros((10, 10, 3), dtype=np.float32),
    np.zeros((0, 10, 3), dtype=np.uint8),
    np.zeros((1, 10, 10, 3), dtype=np.uint8),
])
def test_preprocess_rejects_bad_images(preprocessor, image):
    with pytest.raises(ValueError, match='uint8'):
        preprocessor(image)


def test_preprocess_matches_the_training_test_transform(preprocessor):
    """The runtime resize and training.transforms.test_transform are kept apart on purpose."""
    from training.data_layout import DatasetLayout
    from training.transforms import test_transform

    rgb = skimage.data.coffee()
    layout = DatasetLayout(root='unused', split=None, labels=('hold',))
    expected = test_transform(Image.fromarray(rgb), layout).double().numpy()
    actual = preprocessor(rgb)[0].double().numpy()
    grey_levels = np.abs(actual - expected) * np.array(IMAGENET_STD)[:, None, None] * 255.0
    assert grey_levels.max() <= 2.0 + 1e-4
    assert grey_levels.mean() < 0.5
