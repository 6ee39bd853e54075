"""The inference worker: one thread that owns the backend and always takes the newest frames.

Callbacks only drop messages into a :class:`LatestFrames` (one latest-wins slot per camera);
this thread decodes, infers, post-processes and publishes, so a slow model never makes ROS
callbacks or queues wait and the output always belongs to the newest image. With several
cameras it takes the newest frame of every camera that has one and runs them as ONE batch,
never waiting for a slow camera; every output keeps its own input header. Per-frame problems
are counted and logged (throttled per kind); nothing here raises into the thread's top level.

With ``worker_overlap`` a second thread post-processes and publishes batch k
while this one decodes, preprocesses and infers batch k+1 (the backend call releases the GIL).
The hand-over holds ONE batch: the inferring thread waits for the publishing one rather than
queue, so outputs are never more than one batch behind and the frames taken next are the
newest. Regions (``roi_source``) are chosen here: the camera's newest ROI, or the detections
paired with the frame (``ros/region_inputs.py``), and run by the frame job.
"""

from dataclasses import dataclass
import queue
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

from affordance_grounding.inference.thread_policy import apply_worker_thread_policy
from affordance_grounding.perception.detections import (
    detection_regions, EMPTY_DETECTIONS, empty_message)
from affordance_grounding.perception.frame_processor import (
    DepthInput, FrameInput, FrameProcessor, FrameResult, InferredFrames, region_problem_message)
from affordance_grounding.perception.image_codecs import (
    colour_msg_to_rgb, CompressedImageError, ImageConversionError)
from affordance_grounding.perception.latest_frames import LatestFrames
from affordance_grounding.perception.regions import BAD_ROI, roi_boxes
from affordance_grounding.perception.stamps import NS_PER_S, stamp_to_ns
from affordance_grounding.ros.channels import CameraChannel, OutputPublishers, SharedState
from affordance_grounding.ros.health import NodeHealth
from affordance_grounding.ros.pairing import PairedFrame
from affordance_grounding.ros.params import (
    NodeConfig, to_output_settings, to_region_settings)

# publish(channel, input message, result, label[, detections=msg]) -> {'publish': s, ...}
Publish = Callable[..., Dict[str, float]]

# Stamps this old are no clock skew but recorded data played on the wall clock.
RECORDED_STAMP_AGE_S = 10.0
NO_ROI_YET = ('no ROI has arrived on {topic} yet: running the whole frame until one does '
              '(width or height 0 also means the whole frame)')
IDLE_HINT = ('images arrive but no action is set; send one, e.g. ros2 topic pub --once '
             '/affordance/action std_msgs/msg/String "{data: hold}"')


@dataclass
class _Row:
    """One camera's decoded frame waiting for the batch, with its input message."""

    channel: CameraChannel
    msg: object
    frame: FrameInput
    conversion_s: float
    detections: Optional[object] = None  # the paired Detection2DArray (roi_source detections)


def recorded_time_advice(age_s: float) -> str:
    """Return the one line that says why every frame is old and how to fix it."""
    return (f"frames are {age_s:.0f} s old by this node's clock: recorded data (a rosbag?) "
            'played without simulated time; play it with `ros2 bag play --clock` and start the '
            'node with use_sim_time:=true (launch argument, or -p use_sim_time:=true)')


class FrameWorker(threading.Thread):
    """Takes frames from the slots until stopped; see the module docstring."""

    def __init__(self, processor: FrameProcessor, mailbox: LatestFrames, state: SharedState,
                 publishers: Union[OutputPublishers, Mapping[str, CameraChannel]],
                 health: NodeHealth, node, publish: Publish):
        """Prepare the worker (``start()`` runs it); ``node`` gives the clock and logger.

        ``publishers``: the single camera's publishers, or camera name -> channel. ``health``
        counts every camera together (per-camera figures live in each channel). ``publish``
        sends one frame's results (``ros.publishing.publish_result`` in the node).
        """
        super().__init__(name='affordance_inference', daemon=True)
        self.processor = processor
        self.mailbox = mailbox
        self.state = state
        if isinstance(publishers, OutputPublishers):
            publishers = {'': CameraChannel('', publishers, health)}
        self.channels: Dict[str, CameraChannel] = dict(publishers)
        self.health = health
        self._node = node
        self._publish = publish
        self._stop_event = threading.Event()
        self.ready = threading.Event()

    @property
    def publishers(self) -> OutputPublishers:
        """Return the first camera's outputs (the only ones with the default single camera)."""
        return next(iter(self.channels.values())).publishers

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the loop to end, wake it and wait for the batches in progress."""
        self._stop_event.set()
        self.mailbox.close()
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:
        """Warm up, then process the newest frames until stopped, honouring ``max_rate_hz``."""
        backend = self.processor.backend
        apply_worker_thread_policy(backend)
        try:
            for batch_size in range(1, len(self.channels) + 1):  # every size a batch can have
                backend.warm_up(batch_size=batch_size)
        except Exception as error:  # noqa: B902 - report any backend failure, do not die silently
            self._report('warm_up_failed', f'backend warm-up failed: {error}', error=True)
        handoff: Optional[queue.Queue] = None
        finisher = None
        if self.state.config.worker_overlap:
            handoff = queue.Queue(maxsize=1)  # one batch: never a backlog of stale frames
            finisher = threading.Thread(target=self._finish_loop, args=(handoff,), daemon=True,
                                        name='affordance_publish')
            finisher.start()
        self.ready.set()
        try:
            self._take_loop(handoff)
        finally:
            if finisher is not None:
                handoff.put(None)  # after the last batch: the finisher ends
                finisher.join()

    def _take_loop(self, handoff: Optional[queue.Queue]) -> None:
        """Take, decode and infer the newest frames; hand them on (overlap) or finish them."""
        while not self._stop_event.is_set():
            frames = self.mailbox.take_batch(timeout_s=0.5)
            if not frames:
                continue
            started = time.monotonic()
            try:
                if handoff is None:
                    self.process_batch(frames)
                else:
                    inferred = self._infer(frames)
                    if inferred is not None:
                        handoff.put(inferred)  # waits while the previous batch publishes
            except Exception as error:  # noqa: B902 - a bad frame must not end the worker
                self._report('processing_error', f'frame processing failed: {error!r}')
            rate_hz = self.state.config.max_rate_hz
            if rate_hz > 0:
                self._stop_event.wait(max(0.0, 1.0 / rate_hz - (time.monotonic() - started)))

    def _finish_loop(self, handoff: queue.Queue) -> None:
        """Post-process, run 3D and publish each inferred batch (the second thread)."""
        while True:
            item = handoff.get()
            if item is None:
                return
            try:
                self._finish(*item)
            except Exception as error:  # noqa: B902 - a bad frame must not end the worker
                self._report('processing_error', f'frame processing failed: {error!r}')

    def process(self, msg, camera: str = '') -> None:
        """Decode, infer, post-process and publish one colour frame (raw or compressed)."""
        self.process_batch({camera: msg})

    def process_batch(self, frames: Mapping[str, object]) -> None:
        """Run the newest frame of each camera in ``frames`` (camera -> message) as one batch."""
        inferred = self._infer(frames)
        if inferred is not None:
            self._finish(*inferred)

    def _infer(self, frames: Mapping[str, object]):
        """Run the first half of a batch: (rows, inferred), or None when every frame is skipped."""
        rows = self._prepare_rows(frames)
        if not rows:
            return None
        return rows, self.processor.infer([row.frame for row in rows])

    def _finish(self, rows: Sequence[_Row], inferred: InferredFrames) -> None:
        """Run the second half of a batch: post-process with the current parameters, publish."""
        results = self.processor.finish(inferred, to_output_settings(self.state.config))
        self._publish_rows(rows, results)

    def _prepare_rows(self, frames: Mapping[str, object]) -> List[_Row]:
        config = self.state.config
        regions = to_region_settings(config)
        if regions != self.processor.region_settings:  # roi_margin / max_regions changed
            self.processor.region_settings = regions
        return [row for row in (self._prepare(self.channels[camera], msg, config)
                                for camera, msg in frames.items()) if row is not None]

    def _publish_rows(self, rows: Sequence[_Row], results: Sequence[FrameResult]) -> None:
        if any(self.channels):  # named cameras (even one): "frames per inference" is reported
            self.health.count_batch(len(rows))
        for row, result in zip(rows, results):
            self._finish_row(row, result)

    def _prepare(self, channel: CameraChannel, msg, config: NodeConfig) -> Optional[_Row]:
        """Check age and action and decode one camera's frame; None when it is skipped."""
        detections = None
        if isinstance(msg, PairedFrame):  # roi_source detections: the image and its boxes
            msg, detections = msg.image, msg.detections
        where = channel.log_prefix
        age_s = self._seconds_since(msg.header.stamp)
        self._check_recorded_time(age_s, config)
        action, class_index = channel.action(self.state)
        if not action:
            self._report('no_action', where + IDLE_HINT, error=False)
            return None
        if config.max_image_age_s > 0 and age_s > config.max_image_age_s:
            for health in channel.healths(self.health):
                health.count_stale()
            if self.health.old_stamp_age_s is None:  # else recorded_time_advice said why
                self._report('stale_image', f'{where}dropping an image {age_s:.3f} s old (> '
                             f'max_image_age_s={config.max_image_age_s}); check clocks or '
                             'raise max_image_age_s')
            return None
        start = time.perf_counter()
        try:
            rgb = colour_msg_to_rgb(msg)
        except CompressedImageError as error:
            self._report(f'bad_compressed_image_{error.kind}', f'{where}dropping image: {error}')
            return None
        except ImageConversionError as error:
            self._report('bad_image', f'{where}dropping image: {error}')
            return None
        boxes = self._boxes(channel, msg, detections, rgb.shape[:2], config, where)
        if boxes is False:
            return None
        want_overlay = (config.publish_overlay
                        and channel.publishers.overlay.get_subscription_count() > 0)
        frame = FrameInput(rgb, action, class_index, want_overlay,
                           self._depth_input(channel, msg, config), boxes=boxes,
                           zero_size_is_whole_frame=config.roi_source == 'roi')
        return _Row(channel, msg, frame, time.perf_counter() - start, detections)

    def _boxes(self, channel: CameraChannel, msg, detections, image_hw, config: NodeConfig,
               where: str):
        """Return the frame's regions: None = the whole frame, False = skip it (said why)."""
        if config.roi_source == 'roi':
            roi = channel.roi
            if roi is None:
                self._report('no_roi_yet', where + NO_ROI_YET.format(
                    topic=f'{channel.name}/roi' if channel.name else 'roi'))
                return None
            boxes = roi_boxes(roi, image_hw)
            if boxes is None:
                self._report(BAD_ROI, f'{where}frame skipped: ROI {roi.x},{roi.y} '
                             f'{roi.width}x{roi.height} in a {image_hw[1]}x{image_hw[0]} '
                             'image; ' + region_problem_message(BAD_ROI, 1, config.max_regions))
                return False
            return boxes
        if detections is not None:
            boxes = detection_regions(detections)
            if not boxes:
                self._report(EMPTY_DETECTIONS, where + empty_message(
                    stamp_to_ns(msg.header.stamp)))
            return boxes
        return None

    @staticmethod
    def _depth_input(channel: CameraChannel, msg, config: NodeConfig) -> Optional[DepthInput]:
        """Return the 3D inputs of a frame: depth paired by stamp, the camera's intrinsics."""
        if channel.publishers.grasp_point is None:  # enable_3d is off
            return None
        info = channel.camera_info
        depth_msg = None
        if info is not None:
            depth_msg = channel.depth.closest(stamp_to_ns(msg.header.stamp),
                                              int(config.sync_slop_s * NS_PER_S))
        return DepthInput(depth_msg, None if info is None else info.k, config.sync_slop_s)

    def _finish_row(self, row: _Row, result: FrameResult) -> None:
        """Publish one camera's results under its own input header; count and report them."""
        where = row.channel.log_prefix
        timings = dict(result.timings_s, conversion=row.conversion_s)
        extra = {} if row.detections is None else {'detections': row.detections}
        timings.update(self._publish(row.channel, row.msg, result, row.frame.label, **extra))
        for kind, message in result.problems:
            self._report(kind, where + message)
        delay_s = self._seconds_since(row.msg.header.stamp)
        for health in row.channel.healths(self.health):
            health.count_output(timings, delay_s)

    def _check_recorded_time(self, age_s: float, config: NodeConfig) -> None:
        """Say once (per episode) that frames look recorded, when simulated time is off."""
        looks_recorded = (age_s > max(RECORDED_STAMP_AGE_S, config.max_image_age_s)
                          and not self._node.get_clock().ros_time_is_active)
        if self.health.note_frame_age(age_s, looks_recorded):
            dropped = (f'every frame is dropped (max_image_age_s={config.max_image_age_s})'
                       if config.max_image_age_s > 0 else 'outputs carry old stamps')
            self._node.get_logger().warning(
                f'[recorded_time] {recorded_time_advice(age_s)}; until then {dropped}')

    def _seconds_since(self, stamp) -> float:
        return (self._node.get_clock().now().nanoseconds - stamp_to_ns(stamp)) / NS_PER_S

    def _report(self, kind: str, message: str, error: bool = False) -> None:
        if self.health.problems.report(kind, message):
            logger = self._node.get_logger()
            (logger.error if error else logger.warning)(f'[{kind}] {message}')
