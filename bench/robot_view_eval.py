"""The rows of bench.robot_view: run a frame whole, by regions and object-centric; score them.

Every row's heatmap is the model's ``affordance`` output for the frame's action, as the node
publishes it (whole frame: resized back to 640x480; regions: pasted back by
:func:`~affordance_grounding.perception.regions.paste_heatmaps`). All rows are scored inside
the target's true box against its ground truth with training.metrics, so they compare alike.
"""

from dataclasses import dataclass
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from affordance_grounding.perception.regions import (
    affordance_scores, choose_regions, cut_regions, paste_heatmaps, rank_by_score, Region)
from affordance_grounding.runtime.backends import BackendOptions, InferenceBackend
from affordance_grounding.runtime.postprocess import resize_to_input
from affordance_grounding.runtime.preprocess import ImagePreprocessor
from affordance_grounding.runtime.selection import select_backend
from affordance_grounding.runtime.thread_policy import apply_worker_thread_policy
from bench.robot_view_scenes import RobotFrame
import numpy as np
import torch
from training.metrics import compute_metrics, load_gt_map, MetricAccumulator, normalize_map

ROWS = ('whole frame', 'true boxes', 'jittered boxes', 'object-centric')
DETECTOR_ROWS = ('true boxes', 'jittered boxes')
CHOSEN_SCORE = 'softmax_mean_cam'
# The region score (regions.affordance_scores) and two alternatives, kept in the JSON so that
# the choice stays checked: each maps one region's (K, h, w) class activations to a number.
SCORE_VARIANTS: Dict[str, Callable[[np.ndarray, int], float]] = {
    CHOSEN_SCORE: lambda cam, index: float(affordance_scores(cam[None], index)[0]),
    'mean_cam': lambda cam, index: float(cam[index].mean()),
    'peak_cam': lambda cam, index: float(cam[index].max()),
}


class MapRunner:
    """A loaded backend with the model's preprocessing: images in, action maps and CAMs out."""

    def __init__(self, backend: InferenceBackend):
        """Wrap a loaded backend."""
        metadata = backend.metadata
        self.backend = backend
        self.labels = metadata.labels
        self.size = metadata.image_size
        self.preprocess = ImagePreprocessor(metadata.image_size, metadata.mean, metadata.std)

    def class_index(self, action: str) -> int:
        """Return the action's index among the model's labels."""
        return self.labels.index(action)

    def __call__(self, rgbs: Sequence[np.ndarray], class_index: int
                 ) -> Tuple[np.ndarray, np.ndarray]:
        """Run the images as ONE batch: (N, S, S) action maps in [0, 1], (N, K, G, G) CAMs."""
        batch = torch.empty(len(rgbs), 3, self.size, self.size)
        for row, rgb in enumerate(rgbs):
            self.preprocess(rgb, out=batch[row:row + 1])
        result = self.backend.infer(batch)
        return result.affordance[:, class_index], result.cam


def load_runner(checkpoint: str, backend: str, threads: Optional[int], cache_dir: str,
                device: str = 'cpu') -> MapRunner:
    """Load the bundle (PyTorch) or its cached fp32 ONNX export (ONNX Runtime), as a node."""
    model_path = checkpoint
    if backend != 'torch':
        from affordance_grounding.model.checkpoint import load_grounder
        from bench.model_cache import ensure_onnx

        model_path, _ = ensure_onnx(load_grounder(checkpoint), cache_dir, seed=0)
    options = BackendOptions(intra_op_threads=threads, cpu_spin_wait=False)
    loaded = select_backend(backend, str(model_path), device, options)
    apply_worker_thread_policy(loaded)
    return MapRunner(loaded)


def whole_frame_heatmap(runner: MapRunner, rgb: np.ndarray, class_index: int
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """Run the node's path today: (H, W) heatmap of the whole frame, its (K, G, G) CAM."""
    maps, cam = runner([rgb], class_index)
    return resize_to_input(maps[0], rgb.shape[:2]), cam[0]


def region_heatmap(runner: MapRunner, rgb: np.ndarray, regions: Sequence[Region],
                   class_index: int, margin: float) -> Tuple[np.ndarray, np.ndarray]:
    """Regions cut out, run as one batch, pasted back: (H, W) heatmap, (N, K, G, G) CAMs."""
    crops, windows = cut_regions(rgb, regions, margin)
    maps, cam = runner(crops, class_index)
    return paste_heatmaps(maps, windows, rgb.shape[:2]), cam


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
    """KLD / SIM / NSS inside a box, as training.evaluate scores a whole image."""
    window = (slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
    return compute_metrics(normalize_map(heatmap[window]),
                           load_gt_map(np.ascontiguousarray(gt[window])))


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
                class_index: int, margin: float) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Return the heatmap of a frame's regions and each object's CAM (in box order)."""
    tagged = [Region(box.x, box.y, box.width, box.height, source_id=str(index))
              for index, box in enumerate(boxes)]
    choice = choose_regions(tagged, frame.rgb.shape[:2], max_regions=len(tagged))
    heatmap, cam = region_heatmap(runner, frame.rgb, choice.regions, class_index, margin)
    order = [int(region.source_id) for region in choice.regions]
    return heatmap, [cam[order.index(index)] for index in range(len(boxes))]


def evaluate_frame(runner: MapRunner, frame: RobotFrame, margin: float,
                   keep_heatmaps: bool = False) -> Dict[str, RowResult]:
    """Score every row of :data:`ROWS` on one frame, and the object-centric whole image."""
    index = runner.class_index(frame.action)
    target = frame.objects[frame.target]
    hw = frame.rgb.shape[:2]
    heatmaps, cams = {}, {}
    heatmaps['whole frame'], whole_cam = whole_frame_heatmap(runner, frame.rgb, index)
    cams['whole frame'] = [box_cells(whole_cam, item.box, hw) for item in frame.objects]
    heatmaps['true boxes'], cams['true boxes'] = run_regions(
        runner, frame, [item.box for item in frame.objects], index, margin)
    heatmaps['jittered boxes'], cams['jittered boxes'] = run_regions(
        runner, frame, frame.jittered, index, margin)
    maps, tile_cam = runner([item.tile_rgb for item in frame.objects], index)
    tile_heatmap = resize_to_input(maps[frame.target], target.tile_rgb.shape[:2])
    cams['object-centric'] = list(tile_cam)
    results = {row: RowResult(box_metrics(heatmaps[row], frame.frame_gt, target.box),
                              score_objects(cams[row], index),
                              heatmaps[row] if keep_heatmaps else None)
               for row in ROWS[:-1]}
    results['object-centric'] = RowResult(
        box_metrics(tile_heatmap, frame.tile_gt, target.tile_box),
        score_objects(cams['object-centric'], index), tile_heatmap if keep_heatmaps else None)
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
        for frame, results in evaluated:
            accumulator.add(results[row].metrics, frame.action)
            for name, scores in results[row].scores.items():
                hits[name] += rank_by_score(scores)[0] == frame.target
        summary = {key: round(value, 4) for key, value in accumulator.summary().mean.items()}
        if results[row].scores:
            accuracy = {name: round(count / len(evaluated), 4) for name, count in hits.items()}
            summary['ranking_accuracy'] = accuracy[CHOSEN_SCORE]
            summary['ranking_accuracy_by_score'] = accuracy
        rows[row] = summary
    return {'rows': rows, 'chosen_score': CHOSEN_SCORE}
