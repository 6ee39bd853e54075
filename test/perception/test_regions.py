"""Regions: clipping, choice, crop windows, paste-back, scores and the box parser."""

import math

from affordance_grounding.perception.regions import (
    affordance_scores, BAD_ROI, choose_regions, clip_region, crop_window, CropWindow,
    cut_regions, parse_box, paste_heatmaps, rank_by_score, Region, relative_scores,
    roi_boxes, TOO_MANY_REGIONS, whole_frame)
import numpy as np
import pytest

HW = (480, 640)


# ------------------------------------------------------------------------------- clipping
def test_a_box_inside_the_image_is_kept_as_integer_pixels():
    clipped = clip_region(Region(10.4, 20.6, 30.2, 40.0, 'd1', 'cup', 0.9), HW)
    assert clipped == Region(10, 20, 31, 41, 'd1', 'cup', 0.9)  # covers the float box


@pytest.mark.parametrize('box, expected', [
    (Region(-20, -10, 60, 50), Region(0, 0, 40, 40)),
    (Region(600, 450, 100, 100), Region(600, 450, 40, 30)),
    (Region(-5, 100, 700, 20), Region(0, 100, 640, 20)),
])
def test_a_box_partly_outside_is_clipped(box, expected):
    assert clip_region(box, HW) == expected


@pytest.mark.parametrize('box', [
    Region(700, 10, 50, 50), Region(-100, 10, 50, 50), Region(10, 480, 50, 50),
    Region(10, -60, 50, 50),
    Region(math.nan, 0, 10, 10), Region(0, 0, math.inf, 10), Region(0, 0, 10, -math.inf),
    Region(0, 0, -10, 10), Region(0, 0, 10, -1),
    Region(2 ** 32 - 10, 0, 20, 20),  # a negative x wrapped into RegionOfInterest's uint32
    Region(0, 0, 10, 4e9), Region(0, 0, 1e300, 1e300),
    Region(0, 0, 0, 10), Region(0, 0, 10, 0),
    Region(0, 0, '5', 10),
])
def test_a_box_outside_nonfinite_negative_huge_or_empty_is_bad(box):
    assert clip_region(box, HW) is None


@pytest.mark.parametrize('box', [Region(0, 0, 0, 0), Region(40, 50, 0, 30),
                                 Region(40, 50, 30, 0)])
def test_zero_width_or_height_is_the_whole_frame_in_roi_mode(box):
    assert clip_region(box, HW, zero_size_is_whole_frame=True) == Region(0, 0, 640, 480)
    assert whole_frame(HW) == Region(0, 0, 640, 480)


def test_numpy_scalars_are_accepted():
    box = Region(np.float32(10), np.int64(20), np.float32(30.5), np.uint32(40))
    assert clip_region(box, HW) == Region(10, 20, 31, 40)


def test_from_center_is_the_detector_form():
    assert Region.from_center(50, 40, 20, 10, label='knife') == Region(40, 35, 20, 10,
                                                                       label='knife')


# ---------------------------------------------------------------------------------- choice
def test_regions_are_chosen_largest_first_ties_in_input_order():
    boxes = [Region(0, 0, 10, 10, 'small'), Region(0, 0, 40, 40, 'large'),
             Region(100, 0, 20, 20, 'mid_a'), Region(200, 0, 20, 20, 'mid_b')]
    choice = choose_regions(boxes, HW)
    assert [region.source_id for region in choice.regions] == ['large', 'mid_a', 'mid_b',
                                                               'small']
    assert choice.problems == {}


def test_the_largest_after_clipping_win_and_the_rest_are_counted():
    boxes = [Region(635, 0, 200, 100, 'mostly_outside'), Region(0, 0, 30, 30, 'inside'),
             Region(5000, 0, 10, 10, 'bad'), Region(0, 0, 5, 5, 'tiny')]
    choice = choose_regions(boxes, HW, max_regions=1)
    assert [region.source_id for region in choice.regions] == ['inside']  # 5x100 < 30x30
    assert choice.problems == {BAD_ROI: 1, TOO_MANY_REGIONS: 2}


def test_hundreds_of_boxes_keep_max_regions_and_count_every_other():
    rng = np.random.default_rng(0)
    boxes = [Region(*rng.uniform(-100, 700, 2), *rng.uniform(-5, 300, 2), source_id=str(i))
             for i in range(500)]
    boxes += [Region(math.nan, 0, 1, 1)] * 50
    choice = choose_regions(boxes, HW, max_regions=8)
    bad = sum(clip_region(box, HW) is None for box in boxes)
    assert len(choice.regions) == 8
    assert choice.problems == {BAD_ROI: bad, TOO_MANY_REGIONS: len(boxes) - bad - 8}
    areas = [region.area for region in choice.regions]
    assert areas == sorted(areas, reverse=True)
    kept = {region.source_id for region in choice.regions}
    largest_dropped = max(clip_region(box, HW).area for box in boxes
                          if clip_region(box, HW) is not None and box.source_id not in kept)
    assert min(areas) >= largest_dropped


def test_no_boxes_is_an_empty_choice_and_max_regions_is_checked():
    assert choose_regions([], HW) == choose_regions([], HW, max_regions=3)
    assert choose_regions([], HW).regions == ()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match='max_regions'):
            choose_regions([], HW, max_regions=bad)


# ----------------------------------------------------------------------- crop windows
def test_the_window_is_a_square_grown_by_the_margin_around_the_box_centre():
    window = crop_window(Region(300, 200, 40, 20), HW, margin=0.25)
    assert (window.width, window.height) == (60, 60)  # 40 * (1 + 2 * 0.25)
    assert (window.x0 + window.x1) / 2 == 320 and (window.y0 + window.y1) / 2 == 210


@pytest.mark.parametrize('size', [(10, 90), (90, 10), (37, 53)])
def test_the_window_keeps_the_object_aspect(size):
    window = crop_window(Region(300, 200, *size), HW, margin=0.1)
    assert window.width == window.height


def test_margin_zero_is_the_box_longer_side_and_bad_margins_are_rejected():
    window = crop_window(Region(100, 100, 50, 30), HW, margin=0.0)
    assert (window.width, window.height) == (50, 50)
    for bad in (-0.1, math.nan, math.inf, 'a'):
        with pytest.raises(ValueError, match='roi_margin'):
            crop_window(Region(100, 100, 50, 30), HW, margin=bad)


@pytest.mark.parametrize('box', [Region(0, 0, 40, 40), Region(600, 440, 40, 40),
                                 Region(0, 440, 40, 40), Region(620, 0, 20, 60)])
def test_at_the_border_the_square_is_shifted_inside_not_padded(box):
    window = crop_window(box, HW, margin=0.5)
    assert window.width == window.height == 2 * max(box.width, box.height)
    assert 0 <= window.x0 and window.x1 <= 640 and 0 <= window.y0 and window.y1 <= 480
    assert window.x0 <= box.x and box.x + box.width <= window.x1
    assert window.y0 <= box.y and box.y + box.height <= window.y1


def test_a_square_larger_than_the_image_shrinks_to_it_and_still_holds_the_box():
    tall = crop_window(Region(300, 0, 100, 480), HW, margin=0.25)
    assert tall == CropWindow(110, 0, 590, 480)  # the largest square, centred on the box
    wide = crop_window(Region(50, 100, 560, 120), HW, margin=0.25)
    assert wide == CropWindow(50, 0, 610, 480)  # only the box's own length exceeds it


def test_every_random_box_lies_inside_its_window_inside_the_image():
    rng = np.random.default_rng(3)
    for _ in range(300):
        box = clip_region(Region(*rng.uniform(-50, 660, 2), *rng.uniform(1, 500, 2)), HW)
        if box is None:
            continue
        window = crop_window(box, HW, margin=float(rng.uniform(0, 1)))
        assert 0 <= window.x0 <= box.x and box.x + box.width <= window.x1 <= 640
        assert 0 <= window.y0 <= box.y and box.y + box.height <= window.y1 <= 480


def test_cut_regions_returns_views_of_each_window():
    rgb = np.arange(480 * 640 * 3, dtype=np.uint32).reshape(480, 640, 3).astype(np.uint8)
    crops, windows = cut_regions(rgb, [Region(10, 20, 30, 30), Region(300, 300, 10, 40)], 0.0)
    assert [crop.shape for crop in crops] == [(30, 30, 3), (40, 40, 3)]
    assert np.shares_memory(crops[0], rgb)
    assert np.array_equal(crops[1], rgb[300:340, 285:325])
    assert windows[1] == CropWindow(285, 300, 325, 340)


# ------------------------------------------------------------------------------ paste back
def test_a_heatmap_is_pasted_at_its_window_and_zero_elsewhere():
    heat = np.full((224, 224), 0.7, np.float32)
    canvas = paste_heatmaps([heat], [CropWindow(100, 50, 200, 150)], HW)
    assert canvas.shape == HW and canvas.dtype == np.float32
    assert np.allclose(canvas[50:150, 100:200], 0.7)
    outside = canvas.copy()
    outside[50:150, 100:200] = 0
    assert not outside.any()


def test_the_pasted_map_is_the_region_map_resized_to_its_window():
    heat = np.zeros((224, 224), np.float32)
    heat[:, 112:] = 1.0  # right half hot
    canvas = paste_heatmaps([heat], [CropWindow(0, 0, 100, 50)], HW)
    assert canvas[25, 10] == 0 and canvas[25, 90] == 1.0


def test_overlapping_regions_take_the_max():
    low = np.full((224, 224), 0.2, np.float32)
    high = np.zeros((224, 224), np.float32)
    high[:112] = 0.9
    canvas = paste_heatmaps([high, low], [CropWindow(0, 0, 100, 100),
                                          CropWindow(50, 0, 150, 100)], HW)
    assert canvas[10, 75] == pytest.approx(0.9)  # both cover it; the hot half wins
    assert canvas[90, 75] == pytest.approx(0.2)  # the cold half of one, 0.2 of the other
    assert canvas[10, 120] == pytest.approx(0.2)
    with pytest.raises(ValueError, match='2 heatmaps for 1 windows'):
        paste_heatmaps([low, high], [CropWindow(0, 0, 10, 10)], HW)


def test_weights_dim_each_region_before_the_max():
    hot = np.ones((224, 224), np.float32)
    windows = [CropWindow(0, 0, 100, 100), CropWindow(50, 0, 150, 100)]
    weights = relative_scores([0.2, 0.8])
    assert weights == pytest.approx([0.25, 1.0])
    canvas = paste_heatmaps([hot, hot], windows, HW, weights=weights)
    assert canvas[10, 10] == pytest.approx(0.25) and canvas[10, 75] == 1.0
    assert canvas[10, 120] == 1.0
    assert np.array_equal(paste_heatmaps([hot], windows[:1], HW, [1.0]),
                          paste_heatmaps([hot], windows[:1], HW))
    with pytest.raises(ValueError, match='1 weights'):
        paste_heatmaps([hot, hot], windows, HW, weights=[1.0])
    assert relative_scores([0.0, 0.0]).tolist() == [0.0, 0.0]
    assert relative_scores([]).size == 0


# ------------------------------------------------------------------------------------ scores
def test_scores_are_the_softmax_of_the_mean_class_activation():
    cam = np.zeros((2, 3, 14, 14), np.float32)
    cam[0, 1] = 2.0  # region 0: action 1 far ahead of the others
    cam[1] = 5.0  # region 1: every class equally high
    cam[1, 1, :7] = 5.5  # and action 1 a little higher on half the grid
    scores = affordance_scores(cam, 1)
    expected_0 = math.exp(2) / (math.exp(2) + 2)
    expected_1 = math.exp(5.25) / (math.exp(5.25) + 2 * math.exp(5))
    assert scores == pytest.approx([expected_0, expected_1])
    assert rank_by_score(scores) == [0, 1]  # high raw logits do not win by themselves


def test_scores_stay_finite_for_large_logits_and_reject_bad_input():
    cam = np.full((1, 4, 14, 14), 1e4, np.float32)
    assert affordance_scores(cam, 0) == pytest.approx([0.25])
    with pytest.raises(ValueError, match='action index'):
        affordance_scores(cam, 4)
    with pytest.raises(ValueError, match='action index'):
        affordance_scores(cam[0], 0)


def test_rank_by_score_is_best_first_and_stable():
    assert rank_by_score([0.1, 0.5, 0.5, 0.9]) == [3, 1, 2, 0]
    assert rank_by_score([]) == []


# ------------------------------------------------------------------------------------ parser
@pytest.mark.parametrize('text, expected', [
    ('120,80,200,150', Region(120, 80, 200, 150)),
    (' 0, 0 ,0,0 ', Region(0, 0, 0, 0)),
])
def test_parse_box_reads_four_whole_numbers(text, expected):
    assert parse_box(text) == expected


@pytest.mark.parametrize('text', ['', '1,2,3', '1,2,3,4,5', '1,2,3,x', '-1,2,3,4', '1.5,2,3,4',
                                  '1;2;3;4', '1,,3,4', '²,1,1,1', 'nan,1,1,1'])
def test_parse_box_rejects_anything_else_with_one_line(text):
    with pytest.raises(ValueError) as caught:
        parse_box(text)
    message = str(caught.value)
    assert '\n' not in message and repr(text) in message and 'x,y,w,h' in message


def test_roi_boxes_is_the_fixed_roi_or_none_to_skip_the_frame():
    assert roi_boxes(Region(10, 20, 30, 40), (240, 320)) == [Region(10, 20, 30, 40)]
    assert roi_boxes(Region(0, 0, 0, 0), (240, 320)) == [Region(0, 0, 0, 0)]  # whole frame
    assert roi_boxes(Region(500, 400, 40, 40), (240, 320)) is None  # wholly outside
    assert roi_boxes(Region(2 ** 32 - 8, 8, 40, 40), (240, 320)) is None  # wrapped uint32
