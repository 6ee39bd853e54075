"""FrameProcessor: whole frames, object regions cut out and pasted back, scores, 3D per region."""

from types import SimpleNamespace

from affordance_grounding.inference.backends import OnnxRuntimeBackend
from affordance_grounding.perception.frame_processor import (
    DepthInput, FrameInput, FrameProcessor)
from affordance_grounding.perception.regions import (
    affordance_scores, crop_window, Region, TOO_MANY_REGIONS)
from affordance_grounding.perception.settings import OutputSettings, RegionSettings
import numpy as np
import pytest

SETTINGS = OutputSettings()
K_MATRIX = [300.0, 0.0, 160.0, 0.0, 300.0, 120.0, 0.0, 0.0, 1.0]


class CountingBackend:
    """A loaded backend that counts its ``infer`` calls and batch sizes."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer(self, images):
        self.batches.append(int(images.shape[0]))
        return self.inner.infer(images)


@pytest.fixture(scope='module')
def backend(tiny_onnx):
    return OnnxRuntimeBackend(str(tiny_onnx), 'cpu').load()


@pytest.fixture
def processor(backend):
    return FrameProcessor(CountingBackend(backend), RegionSettings(margin=0.25, max_regions=3))


def scene(seed=0, hw=(240, 320)):
    return np.random.default_rng(seed).integers(0, 256, size=hw + (3,), dtype=np.uint8)


def hold(processor):
    return processor.labels.index('hold')


def test_whole_frame_result_is_the_frame_pipeline_result(processor):
    rgb = scene()
    result, = processor.process([FrameInput(rgb, 'hold', hold(processor))], SETTINGS)
    expected = processor.pipeline.run(rgb, hold(processor), SETTINGS, 'hold')
    np.testing.assert_array_equal(result.heatmap, expected.heatmap)
    np.testing.assert_array_equal(result.mask, expected.mask)
    np.testing.assert_array_equal(result.overlay, expected.overlay)
    assert result.regions == () and result.region_scores is None and result.problems == []
    assert set(result.timings_s) == {'preprocess', 'inference', 'postprocess'}


def test_each_region_runs_alone_and_is_pasted_back_where_it_came_from(processor):
    rgb = scene(1)
    boxes = [Region(20, 30, 60, 40), Region(200, 120, 80, 90)]
    result, = processor.process([FrameInput(rgb, 'hold', hold(processor), overlay=False,
                                            boxes=boxes)], SETTINGS)
    assert result.overlay is None
    assert [region.area for region in result.regions] == [7200, 2400]  # the largest first
    outside = np.ones(rgb.shape[:2], bool)
    for region, score in zip(result.regions, result.region_scores):
        window = crop_window(region, rgb.shape[:2], 0.25)
        crop = window.cut(rgb)
        alone = processor.pipeline.run(crop, hold(processor), SETTINGS)
        np.testing.assert_allclose(window.cut(result.heatmap), alone.heatmap, atol=1e-6)
        outside[window.y0:window.y1, window.x0:window.x1] = False
        rows = processor.pipeline.infer_rows([crop], [hold(processor)])
        assert score == pytest.approx(affordance_scores(rows.cams, hold(processor))[0])
    assert not result.heatmap[outside].any()  # zero outside every region
    assert processor.backend.batches[0] == 2  # both regions in one inference


def test_regions_of_two_frames_and_a_whole_frame_share_one_inference(processor):
    frames = [FrameInput(scene(2), 'hold', hold(processor), boxes=[Region(0, 0, 50, 50)]),
              FrameInput(scene(3), 'hold', hold(processor)),
              FrameInput(scene(4), 'hold', hold(processor),
                         boxes=[Region(10, 10, 40, 40), Region(100, 100, 30, 60)])]
    results = processor.process(frames, SETTINGS)
    assert processor.backend.batches == [4]
    assert [len(result.regions) for result in results] == [1, 0, 2]


def test_bad_and_surplus_boxes_are_counted_and_explained(processor):
    rgb = scene(5)
    boxes = [Region(-500, -500, 10, 10), Region(5, 5, -3, 8), Region(0, 0, 0, 0),
             Region(float('nan'), 0, 5, 5)] + [Region(10 * i, 10, 20 + i, 20) for i in range(5)]
    result, = processor.process([FrameInput(rgb, 'hold', hold(processor), boxes=boxes)],
                                SETTINGS)
    problems = dict(result.problems)
    assert set(problems) == {'bad_roi', TOO_MANY_REGIONS}
    assert problems['bad_roi'].startswith('4 box(es) dropped')
    assert 'max_regions=3' in problems[TOO_MANY_REGIONS]
    assert len(result.regions) == 3


def test_a_frame_whose_boxes_are_all_unusable_has_no_heat_and_runs_nothing(processor):
    rgb = scene(6)
    result, = processor.process([FrameInput(rgb, 'hold', hold(processor),
                                            boxes=[Region(9000, 9000, 5, 5)])], SETTINGS)
    assert result.regions == () and not result.heatmap.any() and not result.mask.any()
    assert [kind for kind, _ in result.problems] == ['bad_roi']
    assert processor.backend.batches == []


def test_zero_size_roi_means_the_whole_frame_when_asked(processor):
    rgb = scene(7)
    result, = processor.process([FrameInput(rgb, 'hold', hold(processor),
                                            boxes=[Region(0, 0, 0, 0)],
                                            zero_size_is_whole_frame=True)], SETTINGS)
    assert result.regions[0] == Region(0, 0, 320, 240)


def test_the_3d_outputs_belong_to_the_best_region(processor):
    rgb = scene(8)
    boxes = [Region(10, 10, 60, 60), Region(220, 140, 70, 70)]
    depth = SimpleNamespace(encoding='32FC1', height=240, width=320, step=320 * 4,
                            is_bigendian=0, data=np.full((240, 320), 1.0, np.float32).tobytes())
    settings = OutputSettings(mask_threshold=0.0, mask_largest_component=False)
    result, = processor.process([FrameInput(rgb, 'hold', hold(processor), boxes=boxes,
                                            depth=DepthInput(depth, K_MATRIX))], settings)
    best = result.best_region
    u, v = result.grasp.point.pixel_uv
    assert best.x <= u < best.x + best.width and best.y <= v < best.y + best.height
    assert result.ranking[0] == list(result.region_scores).index(max(result.region_scores))


def test_the_overlay_draws_every_box(processor):
    rgb = np.zeros((240, 320, 3), np.uint8)
    boxes = [Region(40, 60, 100, 80)]
    with_boxes, = processor.process([FrameInput(rgb, 'hold', hold(processor), boxes=boxes)],
                                    SETTINGS)
    plain = processor.pipeline.postprocess_full(with_boxes.heatmap, rgb, SETTINGS, 'hold')
    edge = (slice(60, 140), 40)  # the box's left edge column
    assert not np.array_equal(with_boxes.overlay[edge], plain.overlay[edge])
