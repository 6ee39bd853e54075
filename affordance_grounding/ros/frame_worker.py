"""The inference worker: one thread that owns the backend and always takes the newest frames.

Callbacks only drop messages into a :class:`LatestFrames` (one latest-wins slot per camera);
this thread decodes, infers, post-processes and publishes, so a slow model never makes ROS
callbacks or queues wait and the output always belongs to the newest image. With several
cameras it takes the newest frame of every camera that has one and runs them as ONE batch,
never waiting for a slow camera; every output keeps its own input header. Per-frame problems
are counted and logged (throttled per kind); nothing here raises into the thread's top level.
"""

from dataclasses import dataclass, field
import threading
import time
from typing import Dict, List, Mapping, Optional, Tuple, Union

from affordance_grounding.geometry.grasp3d import compute_3d_outputs
from affordance_grounding.inference.thread_policy import apply_worker_thread_policy
from affordance_grounding.perception.frame_pipeline import (
    FrameOutputs, FramePipeline, OutputSettings)
from affordance_grounding.perception.image_codecs import (
    colour_msg_to_rgb, CompressedImageError, image_msg_to_array, ImageConversionError)
from affordance_grounding.perception.latest_frames import LatestFrames
from affordance_grounding.perception.stamps import stamp_to_ns
from affordance_grounding.ros.conversions import array_to_image_msg
from affordance_grounding.ros.health import NodeHealth
from affordance_grounding.ros.messages import (
    to_grasp_markers, to_grasp_pose_markers, to_point_cloud, to_point_stamped, to_pose_stamped)
from affordance_grounding.ros.pairing import StampedBuffer
from affordance_grounding.ros.params import COLORMAPS, NodeConfig
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import MarkerArray

# Stamps this old are no clock skew but recorded data played on the wall clock.
RECORDED_STAMP_AGE_S = 10.0
IDLE_HINT = ('images arrive but no action is set; send one, e.g. ros2 topic pub --once '
             '/affordance/action std_msgs/msg/String "{data: hold}"')


@dataclass
class SharedState:
    """What the executor thread changes and the worker reads (attribute writes are atomic).

    Attributes:
        config: Current parameters (replaced whole on a parameter change).
        command: (label, class index) of the shared action; ('', -1) when idle. One tuple,
            so the worker never sees a label with another label's index.
    """

    config: NodeConfig
    command: Tuple[str, int] = ('', -1)


@dataclass
class OutputPublishers:
    """One camera's output publishers; 3D ones are None without ``enable_3d``."""

    heatmap: object
    grasp_mask: object
    overlay: object
    grasp_point: Optional[object] = None
    markers: Optional[object] = None
    affordance_cloud: Optional[object] = None
    grasp_pose: Optional[object] = None
    active_action: Optional[object] = None  # per named camera: the action it runs


@dataclass
class CameraChannel:
    """One camera's outputs, statistics and per-camera inputs.

    Attributes:
        name: Camera name (its topic namespace); '' for the single camera of the default.
        publishers: Its output publishers.
        health: Its statistics (the node's own :class:`NodeHealth` for the single camera).
        command: Its own action from ``<camera>/action``, overriding the shared one; None
            follows the shared action.
        camera_info: Newest camera info (3D only).
        depth: Recent depth images by stamp (3D only).
    """

    name: str
    publishers: OutputPublishers
    health: NodeHealth
    command: Optional[Tuple[str, int]] = None
    camera_info: Optional[CameraInfo] = None
    depth: StampedBuffer = field(default_factory=StampedBuffer)

    def action(self, state: SharedState) -> Tuple[str, int]:
        """(label, class index) this camera runs: its own action, else the shared one."""
        return self.command if self.command is not None else state.command


@dataclass
class _Row:
    """One camera's decoded frame waiting for the batch."""

    channel: CameraChannel
    msg: object
    rgb: object
    action: str
    class_index: int
    overlay: bool
    conversion_s: float


def recorded_time_advice(age_s: float) -> str:
    """Return the one line that says why every frame is old and how to fix it."""
    return (f"frames are {age_s:.0f} s old by this node's clock: recorded data (a rosbag?) "
            'played without simulated time; play it with `ros2 bag play --clock` and start the '
            'node with use_sim_time:=true (launch argument, or -p use_sim_time:=true)')


class FrameWorker(threading.Thread):
    """Takes frames from the slots until stopped; see the module docstring."""

    def __init__(self, pipeline: FramePipeline, mailbox: LatestFrames, state: SharedState,
                 publishers: Union[OutputPublishers, Mapping[str, CameraChannel]],
                 health: NodeHealth, node):
        """Prepare the worker (``start()`` runs it); ``node`` gives the clock and logger.

        ``publishers``: the single camera's publishers, or camera name -> channel. ``health``
        counts every camera together (per-camera figures live in each channel).
        """
        super().__init__(name='affordance_inference', daemon=True)
        self.pipeline = pipeline
        self.mailbox = mailbox
        self.state = state
        if isinstance(publishers, OutputPublishers):
            publishers = {'': CameraChannel('', publishers, health)}
        self.channels: Dict[str, CameraChannel] = dict(publishers)
        self.health = health
        self._node = node
        self._stop_event = threading.Event()
        self.ready = threading.Event()

    @property
    def publishers(self) -> OutputPublishers:
        """Return the first camera's outputs (the only ones with the default single camera)."""
        return next(iter(self.channels.values())).publishers

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the loop to end, wake it and wait for the batch in progress."""
        self._stop_event.set()
        self.mailbox.close()
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:
        """Warm up, then process the newest frames until stopped, honouring ``max_rate_hz``."""
        apply_worker_thread_policy(self.pipeline.backend)
        try:
            for batch_size in range(1, len(self.channels) + 1):  # every size a batch can have
                self.pipeline.backend.warm_up(batch_size=batch_size)
        except Exception as error:  # noqa: B902 - report any backend failure, do not die silently
            self._report('warm_up_failed', f'backend warm-up failed: {error}', error=True)
        self.ready.set()
        while not self._stop_event.is_set():
            frames = self.mailbox.take_batch(timeout_s=0.5)
            if not frames:
                continue
            started = time.monotonic()
            try:
                self.process_batch(frames)
            except Exception as error:  # noqa: B902 - a bad frame must not end the worker
                self._report('processing_error', f'frame processing failed: {error!r}')
            rate_hz = self.state.config.max_rate_hz
            if rate_hz > 0:
                self._stop_event.wait(max(0.0, 1.0 / rate_hz - (time.monotonic() - started)))

    def process(self, msg, camera: str = '') -> None:
        """Decode, infer, post-process and publish one colour frame (raw or compressed)."""
        self.process_batch({camera: msg})

    def process_batch(self, frames: Mapping[str, object]) -> None:
        """Run the newest frame of each camera in ``frames`` (camera -> message) as one batch."""
        config = self.state.config
        rows = [row for row in (self._prepare(self.channels[camera], msg, config)
                                for camera, msg in frames.items()) if row is not None]
        if not rows:
            return
        outputs = self.pipeline.run_batch(
            [row.rgb for row in rows], [row.class_index for row in rows],
            to_output_settings(config),
            overlay_labels=[row.action if row.overlay else None for row in rows])
        if len(self.channels) > 1:
            self.health.count_batch(len(rows))
        for row, frame_outputs in zip(rows, outputs):
            self._publish_row(row, frame_outputs)

    def _prepare(self, channel: CameraChannel, msg, config: NodeConfig) -> Optional[_Row]:
        """Check age and action and decode one camera's frame; None when it is skipped."""
        where = f'camera {channel.name}: ' if channel.name else ''
        age_s = self._seconds_since(msg.header.stamp)
        self._check_recorded_time(age_s, config)
        action, class_index = channel.action(self.state)
        if not action:
            self._report('no_action', where + IDLE_HINT, error=False)
            return None
        if config.max_image_age_s > 0 and age_s > config.max_image_age_s:
            for health in self._healths(channel):
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
        want_overlay = (config.publish_overlay
                        and channel.publishers.overlay.get_subscription_count() > 0)
        return _Row(channel, msg, rgb, action, class_index, want_overlay,
                    time.perf_counter() - start)

    def _publish_row(self, row: _Row, outputs: FrameOutputs) -> None:
        """Publish one camera's outputs under its own input header and count them."""
        start = time.perf_counter()
        self._publish_images(row.channel.publishers, row.msg, outputs)
        timings = dict(outputs.timings_s, conversion=row.conversion_s,
                       publish=time.perf_counter() - start)
        if row.channel.publishers.grasp_point is not None:
            timings.update(self._publish_3d(row.channel, row.msg, outputs, row.action,
                                            row.rgb.shape[:2]))
        delay_s = self._seconds_since(row.msg.header.stamp)
        for health in self._healths(row.channel):
            health.count_output(timings, delay_s)

    def _healths(self, channel: CameraChannel) -> List[NodeHealth]:
        """Return the statistics a camera's events count in: the node's and the camera's own."""
        return [self.health] + ([channel.health] if channel.health is not self.health else [])

    @staticmethod
    def _publish_images(publishers: OutputPublishers, msg: Image,
                        outputs: FrameOutputs) -> None:
        publishers.heatmap.publish(array_to_image_msg(outputs.heatmap, '32FC1', msg.header))
        publishers.grasp_mask.publish(array_to_image_msg(outputs.mask, 'mono8', msg.header))
        if outputs.overlay is not None:
            publishers.overlay.publish(array_to_image_msg(outputs.overlay, 'bgr8', msg.header))

    def _publish_3d(self, channel: CameraChannel, msg, outputs: FrameOutputs, action: str,
                    image_hw: Tuple[int, int]) -> Dict[str, float]:
        """Pair depth by stamp, run the 3D chain, publish point, cloud, pose and markers.

        ``image_hw`` is the decoded colour size (a CompressedImage carries no size fields).
        Returns the 3D stage timings (``depth``: pairing and decoding; ``grasp_point`` and
        ``grasp_pose`` from the chain; ``publish_3d``), or {} when nothing could be computed.
        """
        start = time.perf_counter()
        where = f'camera {channel.name}: ' if channel.name else ''
        config = self.state.config
        info = channel.camera_info
        if info is None:
            self._report('no_camera_info', f'{where}enable_3d is set but no camera_info has '
                         "arrived; remap camera_info to the colour camera's CameraInfo topic")
            return {}
        slop_ns = int(config.sync_slop_s * 1e9)
        depth_msg = channel.depth.closest(stamp_to_ns(msg.header.stamp), slop_ns)
        if depth_msg is None:
            self._report('no_depth', f'{where}no depth image within sync_slop_s='
                         f'{config.sync_slop_s} s of the colour stamp; is depth '
                         'published and aligned to colour?')
            return {}
        try:
            depth, encoding = image_msg_to_array(depth_msg)
            decoded = time.perf_counter()
            result = compute_3d_outputs(depth, encoding, outputs.mask, outputs.heatmap,
                                        image_hw, info.k)
        except ValueError as error:  # ImageConversionError is a ValueError too
            self._report('bad_depth', f'{where}no grasp point: {error}')
            return {}
        computed = time.perf_counter()
        publishers = channel.publishers
        markers = []
        if result.point.xyz_m is None:
            self._report('no_grasp_point', f'{where}no grasp point: {result.point.reason}')
        else:
            publishers.grasp_point.publish(to_point_stamped(msg.header, result.point.xyz_m))
            markers += to_grasp_markers(msg.header, result.point.xyz_m, action).markers
        cloud = result.cloud
        if len(cloud.points) and publishers.affordance_cloud.get_subscription_count() > 0:
            publishers.affordance_cloud.publish(
                to_point_cloud(msg.header, cloud.xyzi))
        pose = result.pose
        if pose.pose is None:
            self._report(f'grasp_pose_{pose.reason}', f'{where}no grasp pose: {pose.detail}')
        else:
            publishers.grasp_pose.publish(to_pose_stamped(msg.header, pose.pose))
        markers += to_grasp_pose_markers(msg.header, pose.pose).markers
        if result.point.xyz_m is not None:
            publishers.markers.publish(MarkerArray(markers=markers))
        return dict(result.timings_s, depth=decoded - start,
                    publish_3d=time.perf_counter() - computed)

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
