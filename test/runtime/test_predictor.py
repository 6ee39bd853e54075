"""AffordancePredictor contract: state guard, label errors, heatmap frame and range."""

from affordance_grounding.model.calibration import upsample_and_normalize
from affordance_grounding.runtime.postprocess import resize_to_input
from affordance_grounding.runtime.predictor import AffordancePredictor
import numpy as np
import pytest
import torch


@pytest.fixture(scope='module')
def rgb():
    """Return a fixed (120, 200, 3) uint8 image (not square, to check the frame)."""
    return np.random.default_rng(5).integers(0, 256, size=(120, 200, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def predictor(tiny_grounder, rgb):
    """Return a predictor with the image already set."""
    predictor = AffordancePredictor(tiny_grounder)
    predictor.set_image(rgb)
    return predictor


def test_predictor_predict_before_set_image_raises(tiny_grounder):
    with pytest.raises(RuntimeError, match='set_image'):
        AffordancePredictor(tiny_grounder).predict('hold')


def test_predictor_unknown_action_lists_labels(predictor):
    with pytest.raises(ValueError) as info:
        predictor.predict('teleport')
    assert "'teleport'" in str(info.value)
    for label in ('beat', 'hold', 'sit_on', 'write'):
        assert label in str(info.value)


def test_predictor_heatmap_is_at_input_resolution_in_unit_range(predictor):
    prediction = predictor.predict('hold')
    assert prediction.action == 'hold'
    assert prediction.heatmap.shape == (120, 200)
    assert prediction.heatmap.dtype == np.float32
    assert prediction.heatmap.min() >= 0.0
    assert prediction.heatmap.max() <= 1.0 + 1e-6
    assert prediction.network_heatmap.shape == (224, 224)
    assert prediction.network_heatmap.min() == 0.0
    assert prediction.network_heatmap.max() == pytest.approx(1.0, abs=1e-6)
    assert prediction.cam.shape == prediction.affinity.shape == (14, 14)
    np.testing.assert_allclose(prediction.heatmap,
                               resize_to_input(prediction.network_heatmap, (120, 200)),
                               atol=0, rtol=0)


def test_predictor_matches_grounder_on_preprocessed_image(predictor, tiny_grounder, rgb):
    prediction = predictor.predict('sit_on')
    image = predictor.preprocessor(rgb)
    with torch.no_grad():
        maps = tiny_grounder(image, torch.tensor([25]))
    expected = upsample_and_normalize(maps.calibrated, 224)[0, 0].numpy()
    np.testing.assert_allclose(prediction.network_heatmap, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(prediction.cam, maps.cam[0, 0].numpy(), atol=1e-6, rtol=0)


def test_predictor_predict_is_repeatable_and_per_action(predictor):
    first = predictor.predict('hold')
    again = predictor.predict('hold')
    other = predictor.predict('cut_with')
    np.testing.assert_array_equal(first.heatmap, again.heatmap)
    assert np.abs(first.cam - other.cam).max() > 1e-4


def test_predictor_calibration_none_uses_raw_cam(tiny_grounder, rgb):
    predictor = AffordancePredictor(tiny_grounder, calibration='none')
    predictor.set_image(rgb)
    prediction = predictor.predict('hold')
    cam = torch.from_numpy(prediction.cam)[None, None]
    expected = upsample_and_normalize(cam, 224)[0, 0].numpy()
    np.testing.assert_allclose(prediction.network_heatmap, expected, atol=1e-6, rtol=0)
