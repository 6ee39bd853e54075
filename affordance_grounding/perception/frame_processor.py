"""The per-frame job, without ROS: decoded frames in, every output and every problem out.

One batch of frames (several cameras, or consecutive frames of a bag) goes through the frame
pipeline as one inference; then, per frame that asks for 3D, its paired depth goes through the
3D chain. The node and the bag tool are adapters: they choose the frames, pair depth, then turn
a :class:`FrameResult` into messages. What a frame publishes (the 3D outputs above all) is
decided here, once, by :meth:`FrameResult.outputs_3d`.
"""

from dataclasses import dataclass, field
import time
from typing import Dict, List, Optional, Sequence, Tuple

from affordance_grounding.geometry.grasp3d import compute_3d_outputs, Grasp3DOutputs
from affordance_grounding.geometry.grasp_pose import GraspPose
from affordance_grounding.inference.backends import InferenceBackend
from affordance_grounding.perception.frame_pipeline import FramePipeline, InferredRows
from affordance_grounding.perception.image_codecs import image_msg_to_array
from affordance_grounding.perception.mask import compute_grasp_mask
from affordance_grounding.perception.output_layout import POINT_MARKER_IDS, POSE_MARKER_IDS
from affordance_grounding.perception.postprocess import draw_regions
from affordance_grounding.perception.regions import (
    affordance_scores, choose_regions, crop_window, CropWindow, paste_heatmaps, rank_by_score,
    Region, TOO_MANY_REGIONS)
from affordance_grounding.perception.settings import OutputSettings, RegionSettings
import numpy as np

# Problems of the 3D chain that leave a frame without a grasp point (the bag tool counts these).
GRASP_POINT_PROBLEMS = ('no_camera_info', 'no_depth', 'bad_depth', 'no_grasp_point')


@dataclass(frozen=True)
class DepthInput:
    """What a frame's 3D outputs need; ``None`` fields say what is missing.

    Attributes:
        depth_msg: The depth image paired with the frame by stamp (``sensor_msgs/Image``
            from rclpy or a bag; REP-118 encodings), or None when none was within the slop.
        k_matrix: Row-major 3x3 intrinsics of the colour camera, or None before any
            ``camera_info``.
        sync_slop_s: The pairing slop, for the message when no depth was paired.
        want_pose: Fit the grasp pose (skipped when nobody needs it).
    """

    depth_msg: Optional[object]
    k_matrix: Optional[Sequence[float]]
    sync_slop_s: float = 0.05
    want_pose: bool = True


@dataclass(frozen=True)
class FrameInput:
    """One decoded colour frame and what to compute for it.

    Attributes:
        rgb: (H, W, 3) uint8 RGB.
        label: The action's label (also the overlay's text).
        class_index: The action's index among the model's labels.
        overlay: Render the overlay.
        depth: 3D inputs; None for a 2D-only frame.
        boxes: None: the whole frame is the model's input. Else the object regions (a fixed
            ROI or a detector's boxes, colour-image pixels, as received): each is cut out and
            run on its own, its heatmap pasted back; bad boxes are dropped and counted.
        zero_size_is_whole_frame: A box of width or height 0 means the whole frame (the ROI
            convention of sensor_msgs/RegionOfInterest) instead of a bad box.
    """

    rgb: np.ndarray
    label: str
    class_index: int
    overlay: bool = True
    depth: Optional[DepthInput] = None
    boxes: Optional[Sequence[Region]] = None
    zero_size_is_whole_frame: bool = False


@dataclass(frozen=True)
class Outputs3D:
    """What a frame publishes in 3D (None: nothing of that kind this frame).

    Attributes:
        point_xyz_m: The grasp point in the camera optical frame.
        cloud_xyzi: (N, 4) float32 region points with their heatmap values; never empty.
        pose: The grasp pose.
    """

    point_xyz_m: Optional[Tuple[float, float, float]]
    cloud_xyzi: Optional[np.ndarray]
    pose: Optional[GraspPose]

    @property
    def draws_pose(self) -> bool:
        """The pose markers (arrow, patch) are drawn with a grasp point and a pose only."""
        return self.point_xyz_m is not None and self.pose is not None

    @property
    def deleted_marker_ids(self) -> Tuple[int, ...]:
        """Marker ids this frame deletes, so that RViz never keeps a stale marker.

        Markers go out with every 3D frame: with a grasp point its sphere and label (and the
        pose's arrow and patch, or their deletion without a pose); without one, the deletion
        of every id, so the previous frame's point, label and pose disappear.
        """
        if self.point_xyz_m is None:
            return POINT_MARKER_IDS + POSE_MARKER_IDS
        return () if self.draws_pose else POSE_MARKER_IDS


@dataclass
class FrameResult:
    """Everything one frame produced.

    Attributes:
        heatmap: (H, W) float32 in [0, 1]; input resolution, or S x S with ``model``.
        mask: (H, W) uint8 0/255 grasp region, same resolution as ``heatmap``.
        overlay: (H_in, W_in, 3) uint8 BGR, or None when not asked for.
        grasp: The 3D chain's point, cloud and pose (of the best region when there are
            regions); None when 3D was not asked for or could not run (see ``problems``).
        regions: The regions that ran (clipped, the largest first); empty for a whole frame,
            and for a frame whose boxes were all unusable (its heatmap is then all zero).
        region_scores: (N,) each region's score for the action in [0, 1] (the model's class
            probability for what the region shows), or None without regions.
        problems: (kind, message) of every problem met, in order; messages name the fix.
        timings_s: Seconds per stage: ``preprocess``, ``inference``, ``postprocess`` and,
            with 3D, ``depth`` (decoding), ``grasp_point`` and ``grasp_pose``.
    """

    heatmap: np.ndarray
    mask: np.ndarray
    overlay: Optional[np.ndarray]
    grasp: Optional[Grasp3DOutputs] = None
    problems: List[Tuple[str, str]] = field(default_factory=list)
    timings_s: Dict[str, float] = field(default_factory=dict)
    regions: Tuple[Region, ...] = ()
    region_scores: Optional[np.ndarray] = None

    @property
    def ranking(self) -> List[int]:
        """Indices of ``regions``, the best score for the action first."""
        return [] if self.region_scores is None else rank_by_score(self.region_scores)

    @property
    def best_region(self) -> Optional[Region]:
        """The region that affords the action best, or None."""
        ranking = self.ranking
        return self.regions[ranking[0]] if ranking else None

    def outputs_3d(self) -> Outputs3D:
        """Return what a 3D frame publishes: only what exists, never an empty cloud or a NaN.

        Without ``grasp`` (no depth, no camera_info, unreadable depth) nothing exists, and
        the markers say so (:attr:`Outputs3D.deleted_marker_ids`).
        """
        if self.grasp is None:
            return Outputs3D(None, None, None)
        cloud = self.grasp.cloud.xyzi
        return Outputs3D(self.grasp.point.xyz_m, cloud if len(cloud) else None,
                         self.grasp.pose.pose)


@dataclass
class _Rows:
    """Where a frame's rows sit in the batch, and its regions' crop windows."""

    start: int
    count: int
    regions: Tuple[Region, ...] = ()
    windows: Tuple[CropWindow, ...] = ()


@dataclass
class InferredFrames:
    """A batch between inference and post-processing (:meth:`FrameProcessor.infer`).

    Attributes:
        frames: The frames, in order.
        layout: Where each frame's rows sit in the batch.
        problems: Each frame's region problems so far.
        inferred: The backend's rows; None when no frame had a row (every box unusable).
    """

    frames: Tuple[FrameInput, ...]
    layout: List[_Rows]
    problems: List[List[Tuple[str, str]]]
    inferred: Optional[InferredRows]


class FrameProcessor:
    """Runs batches of decoded frames through a loaded backend and the 3D chain."""

    def __init__(self, backend: InferenceBackend, regions: RegionSettings = RegionSettings()):
        """Wrap a loaded backend; preprocessing follows the model's own metadata."""
        self.pipeline = FramePipeline(backend)
        self.region_settings = regions

    @property
    def backend(self) -> InferenceBackend:
        """The loaded backend."""
        return self.pipeline.backend

    @property
    def labels(self) -> Tuple[str, ...]:
        """The model's labels, in class-index order."""
        return self.pipeline.labels

    def process(self, frames: Sequence[FrameInput],
                settings: OutputSettings) -> List[FrameResult]:
        """Run every frame, and every region of every frame, as one inference; then 3D.

        The same as :meth:`finish` of :meth:`infer`; a caller that overlaps batches (the
        node's worker) calls the two halves in different threads.

        Raises:
            ValueError: On an empty batch, a bad image or a class index out of range (the
                callers check these before; region and 3D problems never raise, they are
                reported in each result's ``problems``).
        """
        return self.finish(self.infer(frames), settings)

    def infer(self, frames: Sequence[FrameInput]) -> 'InferredFrames':
        """Choose and cut out regions, preprocess every row and run the backend once.

        Raises:
            ValueError: As :meth:`process`.
        """
        if not frames:
            raise ValueError('process needs at least one frame')
        self.pipeline.check_class_indices([frame.class_index for frame in frames])
        problems: List[List[Tuple[str, str]]] = []
        images, indices, layout = [], [], []
        for frame in frames:
            rows, frame_problems = self._frame_rows(frame)
            rows.start = len(images)
            images += [window.cut(frame.rgb) for window in rows.windows] or (
                [frame.rgb] if frame.boxes is None else [])
            indices += [frame.class_index] * rows.count
            layout.append(rows)
            problems.append(frame_problems)
        inferred = self.pipeline.infer_rows(images, indices) if images else None
        return InferredFrames(tuple(frames), layout, problems, inferred)

    def finish(self, batch: 'InferredFrames', settings: OutputSettings) -> List[FrameResult]:
        """Post-process each frame of an inferred batch (heatmap, mask, overlay), then its 3D."""
        inferred = batch.inferred
        results = []
        for frame, rows, frame_problems in zip(batch.frames, batch.layout, batch.problems):
            start = time.perf_counter()
            result = self._frame_result(frame, rows, inferred, settings)
            result.problems[:0] = frame_problems
            result.timings_s.update(
                preprocess=sum(inferred.preprocess_s[rows.start:rows.start + rows.count])
                if inferred else 0.0,
                inference=inferred.inference_s if inferred else 0.0,
                postprocess=time.perf_counter() - start)
            if frame.depth is not None:
                mask = result.mask if frame.boxes is None else self._best_region_mask(
                    result, frame.rgb.shape[:2], settings)
                add_3d(result, frame.depth, frame.rgb.shape[:2], mask)
            results.append(result)
        return results

    def _frame_rows(self, frame: FrameInput) -> Tuple[_Rows, List[Tuple[str, str]]]:
        """Choose a frame's regions and their crop windows; count what was dropped."""
        if frame.boxes is None:
            return _Rows(0, 1), []
        settings = self.region_settings
        choice = choose_regions(frame.boxes, frame.rgb.shape[:2], settings.max_regions,
                                frame.zero_size_is_whole_frame)
        windows = tuple(crop_window(region, frame.rgb.shape[:2], settings.margin)
                        for region in choice.regions)
        return (_Rows(0, len(windows), choice.regions, windows),
                [(kind, region_problem_message(kind, count, settings.max_regions))
                 for kind, count in choice.problems.items()])

    def _frame_result(self, frame: FrameInput, rows: _Rows, inferred,
                      settings: OutputSettings) -> FrameResult:
        """Heatmap, mask and overlay of a frame: its own row, or its regions pasted back."""
        label = frame.label if frame.overlay else None
        if frame.boxes is None:
            output = self.pipeline.postprocess(inferred.networks[rows.start], frame.rgb,
                                               settings, label)
            return FrameResult(output.heatmap, output.mask, output.overlay)
        span = slice(rows.start, rows.start + rows.count)
        full = paste_heatmaps(inferred.networks[span] if rows.count else [], rows.windows,
                              frame.rgb.shape[:2])  # (H, W); all zero without regions
        output = self.pipeline.postprocess_full(full, frame.rgb, settings, label)
        scores = (affordance_scores(inferred.cams[span], frame.class_index) if rows.count
                  else np.zeros(0))
        result = FrameResult(output.heatmap, output.mask, output.overlay, regions=rows.regions,
                             region_scores=scores)
        if output.overlay is not None:
            ranking = result.ranking
            draw_regions(output.overlay, [(r.x, r.y, r.width, r.height) for r in rows.regions],
                         scores, ranking[0] if ranking else None)
        return result

    @staticmethod
    def _best_region_mask(result: FrameResult, image_hw: Tuple[int, int],
                          settings: OutputSettings) -> np.ndarray:
        """Return the grasp mask of the best region's box alone: its object gets the 3D outputs."""
        best = result.best_region
        mask = np.zeros_like(result.mask)  # (h, w): input or model resolution
        if best is not None:
            scale_y = mask.shape[0] / image_hw[0]
            scale_x = mask.shape[1] / image_hw[1]
            rows = slice(int(best.y * scale_y), int(np.ceil((best.y + best.height) * scale_y)))
            cols = slice(int(best.x * scale_x), int(np.ceil((best.x + best.width) * scale_x)))
            mask[rows, cols] = compute_grasp_mask(result.heatmap[rows, cols],
                                                  settings.mask_threshold,
                                                  settings.mask_largest_component)
        return mask


def region_problem_message(kind: str, count: int, max_regions: int) -> str:
    """Say why regions were dropped and what to do about it."""
    if kind == TOO_MANY_REGIONS:
        return (f'{count} more region(s) than max_regions={max_regions}: the largest ran, the '
                'rest were dropped; raise max_regions or filter the detections')
    return (f'{count} box(es) dropped: wholly outside the image, negative or non-finite size '
            '(a detector in another image size?)')


def add_3d(result: FrameResult, depth: DepthInput, image_hw: Tuple[int, int],
           mask: np.ndarray) -> None:
    """Run the 3D chain on ``mask`` and the paired depth; problems and timings into ``result``."""
    if depth.k_matrix is None:
        result.problems.append(('no_camera_info', 'enable_3d is set but no camera_info has '
                                "arrived; remap camera_info to the colour camera's CameraInfo "
                                'topic'))
        return
    if depth.depth_msg is None:
        result.problems.append(('no_depth', f'no depth image within sync_slop_s='
                                f'{depth.sync_slop_s} s of the colour stamp; is depth '
                                'published and aligned to colour?'))
        return
    start = time.perf_counter()
    try:
        array_, encoding = image_msg_to_array(depth.depth_msg)
        decoded = time.perf_counter()
        grasp = compute_3d_outputs(array_, encoding, mask, result.heatmap, image_hw,
                                   list(depth.k_matrix), want_pose=depth.want_pose)
    except ValueError as error:  # ImageConversionError is a ValueError too
        result.problems.append(('bad_depth', f'no grasp point: {error}'))
        return
    result.grasp = grasp
    result.timings_s.update(grasp.timings_s, depth=decoded - start)
    if grasp.point.xyz_m is None:
        result.problems.append(('no_grasp_point', f'no grasp point: {grasp.point.reason}'))
    if depth.want_pose and grasp.pose.pose is None:
        result.problems.append((f'grasp_pose_{grasp.pose.reason}',
                                f'no grasp pose: {grasp.pose.detail}'))
