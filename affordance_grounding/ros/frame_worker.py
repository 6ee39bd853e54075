"""The inference worker: one thread that owns the backend and always takes the newest frame.

Callbacks only drop messages into a :class:`LatestMailbox`; this thread decodes, infers,
post-processes and publishes, so a slow model never makes ROS callbacks or queues wait and
the output always belongs to the newest image. Per-frame problems are counted and logged
(throttled per kind); nothing here raises into the thread's top level.
"""

from dataclasses import dataclass, field
import threading
import time
from typing import Optional, Tuple

from affordance_grounding.ros.conversions import (
    array_to_image_msg, image_msg_to_array, image_msg_to_rgb, ImageConversionError)
from affordance_grounding.ros.health import NodeHealth
from affordance_grounding.ros.messages import to_grasp_markers, to_point_stamped
from affordance_grounding.ros.pairing import StampedBuffer
from affordance_grounding.ros.params import COLORMAPS, NodeConfig
from affordance_grounding.runtime.frame_pipeline import FrameOutputs, FramePipeline, OutputSettings
from affordance_grounding.runtime.grasp import (
    check_depth_matches_image, compute_grasp_point, depth_to_metres, intrinsics_from_k)
from affordance_grounding.runtime.latest_mailbox import LatestMailbox
from affordance_grounding.runtime.thread_policy import apply_worker_thread_policy
import cv2
from sensor_msgs.msg import CameraInfo, Image

IDLE_HINT = ('images arrive but no action is set; send one, e.g. ros2 topic pub --once '
             '/affordance/action std_msgs/msg/String "{data: hold}"')


@dataclass
class SharedState:
    """What the executor thread changes and the worker reads (attribute writes are atomic).

    Attributes:
        config: Current parameters (replaced whole on a parameter change).
        command: (label, class index) of the active action; ('', -1) when idle. One tuple,
            so the worker never sees a label with another label's index.
        camera_info: Newest camera info (3D only).
        depth: Recent depth images by stamp (3D only).
    """

    config: NodeConfig
    command: Tuple[str, int] = ('', -1)
    camera_info: Optional[CameraInfo] = None
    depth: StampedBuffer = field(default_factory=StampedBuffer)


@dataclass
class OutputPublishers:
    """The node's output publishers; 3D ones are None without ``enable_3d``."""

    heatmap: object
    grasp_mask: object
    overlay: object
    grasp_point: Optional[object] = None
    markers: Optional[object] = None


def stamp_to_ns(stamp) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class FrameWorker(threading.Thread):
    """Takes frames from the mailbox until stopped; see the module docstring."""

    def __init__(self, pipeline: FramePipeline, mailbox: LatestMailbox, state: SharedState,
                 publishers: OutputPublishers, health: NodeHealth, node):
        """Prepare the worker (``start()`` runs it); ``node`` gives the clock and logger."""
        super().__init__(name='affordance_inference', daemon=True)
        self.pipeline = pipeline
        self.mailbox = mailbox
        self.state = state
        self.publishers = publishers
        self.health = health
        self._node = node
        self._stop_event = threading.Event()
        self.ready = threading.Event()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the loop to end, wake it and wait for the frame in progress."""
        self._stop_event.set()
        self.mailbox.close()
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:
        """Warm up, then process the newest frame until stopped, honouring ``max_rate_hz``."""
        apply_worker_thread_policy(self.pipeline.backend)
        try:
            self.pipeline.backend.warm_up()
        except Exception as error:  # noqa: B902 - report any backend failure, do not die silently
            self._report('warm_up_failed', f'backend warm-up failed: {error}', error=True)
        self.ready.set()
        while not self._stop_event.is_set():
            msg = self.mailbox.take(timeout_s=0.5)
            if msg is None:
                continue
            started = time.monotonic()
            try:
                self.process(msg)
            except Exception as error:  # noqa: B902 - a bad frame must not end the worker
                self._report('processing_error', f'frame processing failed: {error!r}')
            rate_hz = self.state.config.max_rate_hz
            if rate_hz > 0:
                self._stop_event.wait(max(0.0, 1.0 / rate_hz - (time.monotonic() - started)))

    def process(self, msg: Image) -> None:
        """Decode, infer, post-process and publish one colour frame."""
        state, config = self.state, self.state.config
        action, class_index = state.command
        if not action:
            self._report('no_action', IDLE_HINT, error=False)
            return
        if config.max_image_age_s > 0:
            age_s = self._seconds_since(msg.header.stamp)
            if age_s > config.max_image_age_s:
                self.health.count_stale()
                self._report('stale_image', f'dropping an image {age_s:.3f} s old (> '
                             f'max_image_age_s={config.max_image_age_s}); check clocks or '
                             'raise max_image_age_s')
                return
        start = time.perf_counter()
        try:
            rgb = image_msg_to_rgb(msg)
        except ImageConversionError as error:
            self._report('bad_image', f'dropping image: {error}')
            return
        decoded = time.perf_counter()
        want_overlay = (config.publish_overlay
                        and self.publishers.overlay.get_subscription_count() > 0)
        outputs = self.pipeline.run(rgb, class_index, to_output_settings(config),
                                    overlay_label=action if want_overlay else None)
        computed = time.perf_counter()
        self._publish_images(msg, outputs)
        published = time.perf_counter()
        timings = dict(outputs.timings_s, conversion=decoded - start,
                       publish=published - computed)
        if self.publishers.grasp_point is not None:
            self._publish_grasp_point(msg, outputs, action)
            timings['grasp_point'] = time.perf_counter() - published
        self.health.count_output(timings, self._seconds_since(msg.header.stamp))

    def _publish_images(self, msg: Image, outputs: FrameOutputs) -> None:
        self.publishers.heatmap.publish(array_to_image_msg(outputs.heatmap, '32FC1', msg.header))
        self.publishers.grasp_mask.publish(array_to_image_msg(outputs.mask, 'mono8', msg.header))
        if outputs.overlay is not None:
            self.publishers.overlay.publish(
                array_to_image_msg(outputs.overlay, 'bgr8', msg.header))

    def _publish_grasp_point(self, msg: Image, outputs: FrameOutputs, action: str) -> None:
        """Pair depth by stamp, back-project the grasp region, publish point and markers."""
        state = self.state
        info = state.camera_info
        if info is None:
            self._report('no_camera_info', 'enable_3d is set but no camera_info has arrived; '
                         "remap camera_info to the colour camera's CameraInfo topic")
            return
        slop_ns = int(state.config.sync_slop_s * 1e9)
        depth_msg = state.depth.closest(stamp_to_ns(msg.header.stamp), slop_ns)
        if depth_msg is None:
            self._report('no_depth', 'no depth image within sync_slop_s='
                         f'{state.config.sync_slop_s} s of the colour stamp; is depth '
                         'published and aligned to colour?')
            return
        try:
            depth, encoding = image_msg_to_array(depth_msg)
            depth_m = depth_to_metres(depth, encoding)
            image_hw = (int(msg.height), int(msg.width))
            check_depth_matches_image(depth_m.shape, image_hw)
            mask = outputs.mask
            if mask.shape != image_hw:  # heatmap_resolution=model: back to camera pixels
                mask = cv2.resize(mask, image_hw[::-1], interpolation=cv2.INTER_NEAREST)
            k = intrinsics_from_k(info.k)
            result = compute_grasp_point(mask, depth_m, k.fx, k.fy, k.cx, k.cy)
        except ValueError as error:  # ImageConversionError is a ValueError too
            self._report('bad_depth', f'no grasp point: {error}')
            return
        if result.xyz_m is None:
            self._report('no_grasp_point', f'no grasp point: {result.reason}')
            return
        self.publishers.grasp_point.publish(to_point_stamped(msg.header, result.xyz_m))
        self.publishers.markers.publish(to_grasp_markers(msg.header, result.xyz_m, action))

    def _seconds_since(self, stamp) -> float:
        return (self._node.get_clock().now().nanoseconds - stamp_to_ns(stamp)) / 1e9

    def _report(self, kind: str, message: str, error: bool = False) -> None:
        if self.health.problems.report(kind, message):
            logger = self._node.get_logger()
            (logger.error if error else logger.warning)(f'[{kind}] {message}')


def to_output_settings(config: NodeConfig) -> OutputSettings:
    """Return the output-shaping parameters of a configuration."""
    return OutputSettings(heatmap_resolution=config.heatmap_resolution,
                          mask_threshold=config.mask_threshold,
                          mask_largest_component=config.mask_largest_component,
                          overlay_alpha=config.overlay_alpha,
                          colormap=COLORMAPS[config.colormap])
