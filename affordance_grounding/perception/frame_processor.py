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
from affordance_grounding.perception.frame_pipeline import FramePipeline
from affordance_grounding.perception.image_codecs import image_msg_to_array
from affordance_grounding.perception.output_layout import POINT_MARKER_IDS, POSE_MARKER_IDS
from affordance_grounding.perception.settings import OutputSettings
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
    """

    rgb: np.ndarray
    label: str
    class_index: int
    overlay: bool = True
    depth: Optional[DepthInput] = None


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
        grasp: The 3D chain's point, cloud and pose; None when 3D was not asked for or could
            not run (see ``problems``).
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


class FrameProcessor:
    """Runs batches of decoded frames through a loaded backend and the 3D chain."""

    def __init__(self, backend: InferenceBackend):
        """Wrap a loaded backend; preprocessing follows the model's own metadata."""
        self.pipeline = FramePipeline(backend)

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
        """Run the frames as one inference, then each frame's 3D chain.

        Raises:
            ValueError: On an empty batch, a bad image or a class index out of range (the
                callers check these before; 3D problems never raise, they are reported).
        """
        outputs = self.pipeline.run_batch(
            [frame.rgb for frame in frames], [frame.class_index for frame in frames], settings,
            [frame.label if frame.overlay else None for frame in frames])
        results = []
        for frame, output in zip(frames, outputs):
            result = FrameResult(output.heatmap, output.mask, output.overlay,
                                 timings_s=dict(output.timings_s))
            if frame.depth is not None:
                add_3d(result, frame.depth, frame.rgb.shape[:2])
            results.append(result)
        return results


def add_3d(result: FrameResult, depth: DepthInput, image_hw: Tuple[int, int]) -> None:
    """Run the 3D chain on a frame's paired depth; problems and timings go into ``result``."""
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
        grasp = compute_3d_outputs(array_, encoding, result.mask, result.heatmap, image_hw,
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
