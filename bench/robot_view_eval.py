"""The rows of bench.robot_view: run a frame whole, by regions and object-centric; score them.

Every row's heatmap is the model's ``affordance`` output for the frame's action, as the node
publishes it (whole frame: resized back to 640x480; regions: pasted back by
:func:`~affordance_grounding.perception.regions.paste_heatmaps`). All rows are scored inside
the target's true box against its ground truth with training.metrics, so they compare alike.
"""

from dataclasses import dataclass
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from affordance_grounding.inference.backends import InferenceBackend
from affordance_grounding.inference.thread_policy import apply_worker_thread_policy
from affordance_grounding.perception.frame_pipeline import FramePipeline
from affordance_grounding.perception.mask import compute_grasp_mask
from affordance_grounding.perception.postprocess import render_overlay, resize_to_input
from affordance_grounding.perception.regions import (
    affordance_scores, choose_regions, cut_regions, paste_heatmaps, rank_by_score, Region,
    relative_scores)
from affordance_grounding.perception.settings import load_backend, ModelSettings
from bench.robot_view_scenes import RobotFrame
import cv2
import numpy as np
import torch
from training.metrics import compute_metrics, load_gt_map, MetricAccumulator, normalize_map

ROWS = ('whole frame', 'true boxes', 'jittered boxes', 'object-centric')
DETECTOR_ROWS = ('true boxes', 'jittered boxes')
UNIFORM = 'uniform in the box'  # reference: a map that knows the box and nothing else
METRIC_SIZE = 224  # training.evaluate's map side
MASK_THRESHOLD = 0.5  # the node's default mask_threshold
CHOSEN_SCORE = 'softmax_mean_cam'
# The region score (regions.affordance_scores) and two alternatives, kept in the JSON so that
# the choice stays checked: each maps one region's (K, h, w) class activations to a number.
SCORE_VARIANTS: Dict[str, Callable[[np.ndarray, int], float]] = {
    CHOSEN_SCORE: lambda cam, index: float(affordance_scores(cam[None], index)[0]),
    'mean_cam': lambda cam, index: float(cam[index].mean()),
    'peak_cam': lambda cam, index: float(cam[index].max()),
}


class MapRunner:
    """The node's frame pipeline, returning the CAMs too: images in, action maps and CAMs out.

    FramePipeline keeps only the action's map; the region scores need ``cam`` as well.
    """

    def __init__(self, backend: InferenceBackend):
        """Wrap a loaded backend; preprocessing is the node's (the model's own metadata)."""
        self.pipeline = FramePipeline(backend)
        self.backend = backend
        self.size = self.pipeline.image_size

    def class_index(self, action: str) -> int:
        """Return the action's index among the model's labels."""
        return self.pipeline.labels.index(action)

    def __call__(self, rgbs: Sequence[np.ndarray], class_index: int
                 ) -> Tuple[np.ndarray, np.ndarray]:
        """Run the images as ONE batch: (N, S, S) action maps in [0, 1], (N, K, G, G) CAMs."""
        batch = torch.empty(len(rgbs), 3, self.size, self.size)
        for row, rgb in enumerate(rgbs):
            self.pipeline.preprocessor(rgb, out=batch[row:row + 1])
        result = self.backend.infer(batch)
        return result.affordance[:, class_index], result.cam


def load_runner(checkpoint: str, backend: str, cache_dir: str, device: str = 'cpu'
                ) -> MapRunner:
    """Load the bundle (PyTorch) or its cached fp32 ONNX export (ONNX Runtime), as a node."""
    model_path = checkpoint
    if backend != 'torch':
        from affordance_grounding.model.checkpoint import load_grounder
        from bench.model_cache import ensure_onnx

        model_path, _ = ensure_onnx(load_grounder(checkpoint), cache_dir, seed=0)
    loaded = load_backend(ModelSettings(str(model_path), backend, device, cpu_spin_wait=False))
    apply_worker_thread_policy(loaded)
    return MapRunner(loaded)


def whole_frame_heatmap(runner: MapRunner, rgb: np.ndarray, class_index: int
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """Run the node's path today: (H, W) heatmap of the whole frame, its (K, G, G) CAM."""
    maps, cam = runner([rgb], class_index)
    return resize_to_input(maps[0], rgb.shape[:2]), cam[0]


def region_heatmap(runner: MapRunner, rgb: np.ndarray, regions: Sequence[Region],
                   class_index: int, margin: float) -> Tuple[np.ndarray, np.ndarray]:
    """Cut out the regions, run them as one batch, paste back: (H, W) heatmap, (N,) scores."""
    crops, windows = cut_regions(rgb, regions, margin)
    maps, cam = runner(crops, class_index)
    return paste_heatmaps(maps, windows, rgb.shape[:2]), affordance_scores(cam, class_index)


def box_cells(cam: np.ndarray, box: Region, image_hw: Tuple[int, int]) -> np.ndarray:
    """Return the (K, h, w) CAM cells of a whole-frame grid that a box covers (at least one)."""
    grid = cam.shape[-1]
    spans = []
    for start, length, side in ((box.y, box.height, image_hw[0]),
                                (box.x, box.width, image_hw[1])):
        first = min(int(start * grid / side), grid - 1)
        spans.append(slice(first, max(math.ceil((start + length) * grid / side), first + 1)))
    return cam[:, spans[0], spans[1]]


def box_metrics(heatmap: np.ndarray, gt: np.ndarray, box: Region) -> Dict[str, float]:
    """KLD / SIM / NSS inside a box at training.evaluate's 224 x 224, and the heat's share there.

    The heatmap's values are scored as published, not min-maxed again inside the box: a
    flat whole-frame heatmap must not look sharp because its box was stretched to [0, 1].
    """
    window = (slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
    size = (METRIC_SIZE, METRIC_SIZE)
    prediction = cv2.resize(np.ascontiguousarray(heatmap[window], np.float32), size,
                            interpolation=cv2.INTER_LINEAR)  # (224, 224) in [0, 1]
    truth = load_gt_map(np.ascontiguousarray(gt[window]), METRIC_SIZE)  # (224, 224) float64
    metrics = compute_metrics(prediction, truth)
    metrics['heat_share'] = float(heatmap[window].sum() / max(float(heatmap.sum()), 1e-12))
    return metrics


def frame_job(runner: MapRunner, rgb: np.ndarray, class_index: int,
              regions: Optional[Sequence[Region]], margin: float) -> np.ndarray:
    """Run what a node does per frame: heatmap (whole frame or regions), grasp mask, overlay."""
    if regions is None:
        heatmap = whole_frame_heatmap(runner, rgb, class_index)[0]
    else:
        heatmap = region_heatmap(runner, rgb, regions, class_index, margin)[0]
    mask = compute_grasp_mask(heatmap, MASK_THRESHOLD)
    render_overlay(rgb, heatmap, 'action')
    return mask


@dataclass
class RowResult:
    """One row on one frame: metrics in the target's box, scores per object, the heatmap."""

    metrics: Dict[str, float]
    scores: Dict[str, List[float]]
    heatmap: Optional[np.ndarray]


def score_objects(cams: Sequence[np.ndarray], class_index: int) -> Dict[str, List[float]]:
    """Return every score variant for each object's (K, h, w) CAM."""
    return {name: [score(cam, class_index) for cam in cams]
            for name, score in SCORE_VARIANTS.items()}


def run_regions(runner: MapRunner, frame: RobotFrame, boxes: Sequence[Region],
                class_index: int, margin: float
                ) -> Tuple[np.ndarray, np.ndarray, List[np.ndarray]]:
    """Return a frame's region heatmap, the same weighted by score, each object's CAM.

    The CAMs come back in box order (choosing the regions sorts them by size).
    """
    tagged = [Region(box.x, box.y, box.width, box.height, source_id=str(index))
              for index, box in enumerate(boxes)]
    choice = choose_regions(tagged, frame.rgb.shape[:2], max_regions=len(tagged))
    crops, windows = cut_regions(frame.rgb, choice.regions, margin)
    maps, cam = runner(crops, class_index)
    weights = relative_scores(affordance_scores(cam, class_index))
    hw = frame.rgb.shape[:2]
    order = [int(region.source_id) for region in choice.regions]
    return (paste_heatmaps(maps, windows, hw), paste_heatmaps(maps, windows, hw, weights),
            [cam[order.index(index)] for index in range(len(boxes))])


def evaluate_frame(runner: MapRunner, frame: RobotFrame, margin: float,
                   keep_heatmaps: bool = False) -> Dict[str, RowResult]:
    """Score every row of :data:`ROWS` on one frame, and the object-centric whole image."""
    index = runner.class_index(frame.action)
    target = frame.objects[frame.target]
    hw = frame.rgb.shape[:2]
    heatmaps, cams = {}, {}
    heatmaps['whole frame'], whole_cam = whole_frame_heatmap(runner, frame.rgb, index)
    cams['whole frame'] = [box_cells(whole_cam, item.box, hw) for item in frame.objects]
    weighted = {}
    for row, boxes in zip(DETECTOR_ROWS, ([item.box for item in frame.objects],
                                          frame.jittered)):
        heatmaps[row], weighted[row], cams[row] = run_regions(runner, frame, boxes, index,
                                                              margin)
    maps, tile_cam = runner([item.tile_rgb for item in frame.objects], index)
    tile_heatmap = resize_to_input(maps[frame.target], target.tile_rgb.shape[:2])
    cams['object-centric'] = list(tile_cam)
    results = {row: RowResult(box_metrics(heatmaps[row], frame.frame_gt, target.box),
                              score_objects(cams[row], index),
                              heatmaps[row] if keep_heatmaps else None)
               for row in ROWS[:-1]}
    for row, heatmap in weighted.items():  # where the heat goes once scores dim the regions
        results[row].metrics['heat_share_weighted'] = box_metrics(
            heatmap, frame.frame_gt, target.box)['heat_share']
    results['object-centric'] = RowResult(
        box_metrics(tile_heatmap, frame.tile_gt, target.tile_box),
        score_objects(cams['object-centric'], index), tile_heatmap if keep_heatmaps else None)
    results[UNIFORM] = RowResult(box_metrics(np.ones(hw, np.float32), frame.frame_gt,
                                             target.box), {}, None)
    results['object-centric, whole image'] = RowResult(
        compute_metrics(normalize_map(maps[frame.target]), load_gt_map(frame.tile_gt)), {},
        None)
    return results


def summarize_rows(evaluated: Sequence[Tuple[RobotFrame, Dict[str, RowResult]]]) -> dict:
    """Return mean metrics per row and how often the target ranked first, per score."""
    names = list(evaluated[0][1])
    rows = {}
    for row in names:
        accumulator = MetricAccumulator()
        hits = dict.fromkeys(SCORE_VARIANTS, 0)
        shares, weighted = [], []
        for frame, results in evaluated:
            accumulator.add(results[row].metrics, frame.action)
            shares.append(results[row].metrics.get('heat_share'))
            weighted.append(results[row].metrics.get('heat_share_weighted'))
            for name, scores in results[row].scores.items():
                hits[name] += rank_by_score(scores)[0] == frame.target
        summary = {key: round(value, 4) for key, value in accumulator.summary().mean.items()}
        for key, values in (('heat_share', shares), ('heat_share_weighted', weighted)):
            if None not in values:
                summary[key] = round(float(np.mean(values)), 4)
        if results[row].scores:
            accuracy = {name: round(count / len(evaluated), 4) for name, count in hits.items()}
            summary['ranking_accuracy'] = accuracy[CHOSEN_SCORE]
            summary['ranking_accuracy_by_score'] = accuracy
        rows[row] = summary
    return {'rows': rows, 'chosen_score': CHOSEN_SCORE}
