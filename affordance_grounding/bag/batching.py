"""Decoded frames -> batches through the frame job -> results in the output bag.

The frame job (perception/frame_processor.py, the node's) runs in one worker thread set up
like the node's; results are written in frame order, each with its input's header and receive
time.
"""

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Dict, List, Optional, Tuple

from affordance_grounding.bag import messages
from affordance_grounding.bag.detections import to_affordance_detections
from affordance_grounding.bag.frames import Frame
from affordance_grounding.bag.job import BagJob, BagSummary
from affordance_grounding.bag.media import OverlayMedia
from affordance_grounding.bag.output import OutputBag
from affordance_grounding.inference.backends import InferenceBackend
from affordance_grounding.inference.thread_policy import apply_worker_thread_policy
from affordance_grounding.perception.detections import (
    detection_regions, EMPTY_DETECTIONS, NO_DETECTIONS, ranked_detections)
from affordance_grounding.perception.frame_processor import (
    DepthInput, FrameInput, FrameProcessor, FrameResult, GRASP_POINT_PROBLEMS, Outputs3D)
from affordance_grounding.perception.image_codecs import colour_msg_to_rgb, ImageConversionError
from affordance_grounding.perception.regions import BAD_ROI, PROBLEM_KINDS, roi_boxes
from affordance_grounding.vocabulary import (
    DEFAULT_MIN_TEXT_MARGIN, parse_action_command, TextMatcher)


SKIP_FRAME = object()  # FrameBatcher._boxes: no regions for this frame, do not run it


def start_inference_thread(backend: InferenceBackend) -> ThreadPoolExecutor:
    """One worker thread for the frame job, set up like the node's (thread_policy.py).

    From a thread with torch's default threads the same work ran 3.4-3.8x slower
    (docs/benchmarks.md, *Recorded bags*).
    """
    return ThreadPoolExecutor(1, thread_name_prefix='affordance_bag_inference',
                              initializer=apply_worker_thread_policy, initargs=(backend,))


class ActionParser:
    """Action commands -> (label, index) by the node's policy; each distinct text parsed once.

    The same parser as the node's ``action`` topic (labels, synonyms, the model's optional
    text fallback with the same margin). A command that does not parse is warned about once
    and reported as None: the caller keeps the previous action, as the node does.
    """

    def __init__(self, labels: Tuple[str, ...], log: Callable[[str], object],
                 text_matcher: Optional[TextMatcher] = None,
                 min_margin: float = DEFAULT_MIN_TEXT_MARGIN):
        """Parse for ``labels``; warnings go to ``log``."""
        self.labels, self.log = labels, log
        self.text_matcher, self.min_margin = text_matcher, min_margin
        self._known: Dict[str, Optional[Tuple[str, int]]] = {}

    def __call__(self, text: str) -> Optional[Tuple[str, int]]:
        """Return (label, index) (('', -1) = idle), or None when the command is rejected."""
        if text not in self._known:
            try:
                self._known[text] = parse_action_command(
                    text, self.labels, self.text_matcher, self.min_margin).key
            except ValueError as error:
                self.log(f'action command {text!r} ignored, the previous action stays (as in '
                         f'the node): {error}')
                self._known[text] = None
        return self._known[text]


class ResultWriter:
    """Serializes one frame's results into the output bag and the overlay media."""

    def __init__(self, out: OutputBag, connections: Dict[str, object], media: OverlayMedia,
                 typestore):
        """Write to ``connections`` (output name -> bag connection) of ``out``."""
        self.out, self.connections, self.media, self.typestore = out, connections, media, typestore

    def write_images(self, frame: Frame, outputs: FrameResult) -> None:
        """Heatmap (32FC1), grasp mask (mono8) and overlay (bgr8) with the input's header."""
        header = frame.msg.header
        for name, array_, encoding in (('heatmap', outputs.heatmap, '32FC1'),
                                       ('grasp_mask', outputs.mask, 'mono8'),
                                       ('overlay', outputs.overlay, 'bgr8')):
            self._write(name, frame, messages.to_image_msg(self.typestore, array_, encoding,
                                                           header), messages.IMAGE)
        self.media.add(frame.index, outputs.overlay)

    def write_3d(self, frame: Frame, outputs: Outputs3D, label: str) -> None:
        """Grasp point, pose, region cloud and markers, as the node publishes them.

        Markers are written for every 3D frame; one without a grasp point deletes them.
        """
        header, typestore = frame.msg.header, self.typestore
        if outputs.cloud_xyzi is not None:
            self._write('affordance_cloud', frame,
                        messages.to_point_cloud(typestore, header, outputs.cloud_xyzi),
                        messages.POINT_CLOUD2)
        if outputs.pose is not None:
            self._write('grasp_pose', frame,
                        messages.to_pose_stamped(typestore, header, outputs.pose),
                        messages.POSE_STAMPED)
        if outputs.point_xyz_m is not None:
            self._write('grasp_point', frame,
                        messages.to_point_stamped(typestore, header, outputs.point_xyz_m),
                        messages.POINT_STAMPED)
        self._write('markers', frame,
                    messages.to_frame_markers(typestore, header, outputs, label),
                    messages.MARKER_ARRAY)

    def write_detections(self, frame: Frame, ranked: List[Tuple[int, float]],
                         label: str) -> None:
        """Write the paired detections re-scored for the action, the best first."""
        msg = to_affordance_detections(self.typestore, messages.DETECTION_2D_ARRAY,
                                       frame.detections, ranked, label, frame.msg.header)
        self._write('affordance_detections', frame, msg, messages.DETECTION_2D_ARRAY)

    def _write(self, name: str, frame: Frame, msg, msgtype: str) -> None:
        data = self.typestore.serialize_cdr(msg, msgtype)
        self.out.write(self.connections[name], frame.time_ns, data)


class FrameBatcher:
    """Decodes released frames, runs them in batches and writes their results."""

    def __init__(self, processor: FrameProcessor, job: BagJob, writer: ResultWriter,
                 summary: BagSummary, log, executor: ThreadPoolExecutor,
                 actions: ActionParser):
        """Batch up to ``job.batch_size`` frames per backend call, run on ``executor``.

        With ``job.overlap`` a batch runs while this thread reads, decodes and writes (the
        backend call, OpenCV and numpy release the GIL); one batch is in flight at most, so
        memory stays bounded and results are written in order.
        """
        self.processor, self.job, self.writer = processor, job, writer
        self.summary, self.log = summary, log
        self.on_done: Callable[[int], object] = lambda n: None
        self._executor = executor
        self._batch: List[Tuple[Frame, FrameInput]] = []
        self._inflight: Deque[Tuple[list, Future]] = deque()
        self._actions = actions

    @property
    def oldest_pending_ns(self) -> Optional[int]:
        """Receive time of the oldest frame whose results are not written yet."""
        oldest = self._inflight[0][0] if self._inflight else self._batch
        return oldest[0][0].time_ns if oldest else None

    def add(self, frames: List[Frame]) -> None:
        """Prepare frames; run a batch whenever one is full."""
        for frame in frames:
            prepared = self._prepare(frame)
            if prepared is None:
                self.on_done(1)
                continue
            self._batch.append(prepared)
            if len(self._batch) >= self.job.batch_size:
                self._submit()

    def finish(self) -> None:
        """Run the frames still waiting and write every result."""
        self._submit()
        while self._inflight:
            self._write_oldest()

    def _submit(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        inputs = [frame_input for _, frame_input in batch]
        self._inflight.append((batch, self._executor.submit(
            self.processor.process, inputs, self.job.settings)))
        while len(self._inflight) > (1 if self.job.overlap else 0):
            self._write_oldest()

    def _write_oldest(self) -> None:
        batch, future = self._inflight.popleft()
        results = future.result()  # re-raises the batch's exception here
        for (frame, frame_input), result in zip(batch, results):
            self.writer.write_images(frame, result)
            self.summary.frames_out += 1
            if frame_input.boxes is not None:
                self._count_regions(frame_input, result)
            if frame.detections is not None:
                self.writer.write_detections(
                    frame, ranked_detections(result.regions, result.region_scores),
                    frame_input.label)
            if frame_input.depth is not None:
                self._write_3d(frame, result, frame_input.label)
        self.on_done(len(batch))

    def _prepare(self, frame: Frame) -> Optional[Tuple[Frame, FrameInput]]:
        label, index = self._actions(frame.action)  # the assembler keeps only accepted ones
        if index < 0:
            self.summary.skipped['no_action'] += 1
            return None
        try:
            rgb = colour_msg_to_rgb(frame.msg)
        except ImageConversionError as error:
            if not self.summary.skipped['bad_image']:
                self.log(f'skipping frame {frame.index}: {error} (further bad images are only '
                         'counted)')
            self.summary.skipped['bad_image'] += 1
            return None
        boxes = self._boxes(frame, rgb.shape[:2])
        if boxes is SKIP_FRAME:
            return None
        depth = None
        if 'grasp_point' in self.writer.connections:  # the bag has a depth topic
            info = frame.camera_info
            depth = DepthInput(frame.depth, None if info is None else list(info.k),
                               self.job.sync_slop_s)
        return frame, FrameInput(rgb, label, index, overlay=True, depth=depth, boxes=boxes,
                                 zero_size_is_whole_frame=self.job.roi is not None)

    def _boxes(self, frame: Frame, image_hw):
        """Return the frame's boxes: None for the whole frame, or :data:`SKIP_FRAME` (counted).

        ``--roi`` wholly outside the image skips the frame, as the node's ``roi`` mode does;
        a frame without detections within the slop is skipped in ``--detections-topic`` mode.
        """
        if self.job.roi is not None:
            boxes = roi_boxes(self.job.roi, image_hw)
            if boxes is None:
                self.summary.skipped[BAD_ROI] += 1
                return SKIP_FRAME
            return boxes
        if self.job.topics.detections is None:
            return None
        if frame.detections is None:
            self.summary.skipped[NO_DETECTIONS] += 1
            return SKIP_FRAME
        return detection_regions(frame.detections)

    def _count_regions(self, frame_input: FrameInput, result: FrameResult) -> None:
        """Count the regions that ran and the frames with each region problem."""
        self.summary.regions_run += len(result.regions)
        kinds = {kind for kind, _ in result.problems if kind in PROBLEM_KINDS}
        if not frame_input.boxes:
            kinds.add(EMPTY_DETECTIONS)
        self.summary.region_problems.update(kinds)

    def _write_3d(self, frame: Frame, result: FrameResult, label: str) -> None:
        """Count the frame's grasp point (or why it has none) and write its 3D outputs."""
        missing = [kind for kind, _ in result.problems if kind in GRASP_POINT_PROBLEMS]
        if missing:
            self.summary.grasp_missing[missing[0]] += 1
        else:
            self.summary.grasp_points += 1
        self.writer.write_3d(frame, result.outputs_3d(), label)
