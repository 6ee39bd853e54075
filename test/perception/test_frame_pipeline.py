"""FramePipeline: the backend's map for the action, at input or model resolution."""

from affordance_grounding.inference.backends import OnnxRuntimeBackend
from affordance_grounding.perception.frame_pipeline import FramePipeline, OutputSettings, STAGES
from affordance_grounding.perception.mask import compute_grasp_mask
from affordance_grounding.perception.postprocess import resize_to_input
import numpy as np
import pytest


@pytest.fixture(scope='module')
def pipeline(tiny_onnx):
    return FramePipeline(OnnxRuntimeBackend(str(tiny_onnx), 'cpu').load())


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(3).integers(0, 255, (90, 130, 3), dtype=np.uint8)


def test_frame_pipeline_returns_the_actions_map_at_input_resolution(pipeline, image):
    index = pipeline.labels.index('pour')
    outputs = pipeline.run(image, index, OutputSettings())
    batch = pipeline.preprocessor(image)
    network = pipeline.backend.infer(batch).affordance[0, index]  # (S, S)
    np.testing.assert_allclose(outputs.heatmap, resize_to_input(network, (90, 130)), atol=1e-6)
    assert outputs.heatmap.shape == (90, 130) and outputs.heatmap.dtype == np.float32
    np.testing.assert_array_equal(outputs.mask, compute_grasp_mask(outputs.heatmap, 0.5))
    assert outputs.overlay is None
    assert set(outputs.timings_s) == set(STAGES)
    assert all(seconds >= 0.0 for seconds in outputs.timings_s.values())


def test_frame_pipeline_model_resolution_and_overlay(pipeline, image):
    settings = OutputSettings(heatmap_resolution='model', mask_threshold=0.3,
                              mask_largest_component=False)
    outputs = pipeline.run(image, 0, settings, overlay_label='beat')
    size = pipeline.image_size
    assert outputs.heatmap.shape == (size, size) and outputs.mask.shape == (size, size)
    np.testing.assert_array_equal(outputs.mask,
                                  compute_grasp_mask(outputs.heatmap, 0.3, False))
    assert outputs.overlay.shape == (90, 130, 3) and outputs.overlay.dtype == np.uint8


def test_frame_pipeline_rejects_an_index_outside_the_labels(pipeline, image):
    with pytest.raises(ValueError, match='outside the 36 labels'):
        pipeline.run(image, 36, OutputSettings())


def test_run_batch_equals_one_run_per_frame_with_each_rows_own_action(pipeline):
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, shape, dtype=np.uint8)
              for shape in ((90, 130, 3), (48, 64, 3), (120, 100, 3))]
    indices = [pipeline.labels.index('pour'), 0, pipeline.labels.index('pour')]
    labels = [None, 'beat', None]
    batch = pipeline.run_batch(images, indices, OutputSettings(), labels)
    assert len(batch) == 3
    for image, index, label, outputs in zip(images, indices, labels, batch):
        single = pipeline.run(image, index, OutputSettings(), overlay_label=label)
        assert outputs.heatmap.shape == image.shape[:2]
        np.testing.assert_allclose(outputs.heatmap, single.heatmap, atol=1e-5)
        np.testing.assert_array_equal(outputs.mask, single.mask)
        assert (outputs.overlay is None) == (label is None)
        assert set(outputs.timings_s) == set(STAGES)
    # the rows of one batch ran one inference: they report the same inference time
    assert len({outputs.timings_s['inference'] for outputs in batch}) == 1
    assert not np.allclose(batch[0].heatmap[:48, :64], batch[1].heatmap)


def test_run_batch_rejects_mismatched_or_empty_input(pipeline, image):
    with pytest.raises(ValueError, match='as many class indices'):
        pipeline.run_batch([image, image], [0], OutputSettings())
    with pytest.raises(ValueError, match='at least one'):
        pipeline.run_batch([], [], OutputSettings())
    with pytest.raises(ValueError, match='outside the'):
        pipeline.run_batch([image, image], [0, len(pipeline.labels)], OutputSettings())
