"""The affordance grounding lifecycle node (docs/ros_interface.md): ROS <-> runtime glue.

configure: read and validate parameters, load the model (a bad file fails here, with the
reason in the log and on /diagnostics), create publishers. activate: start the inference
worker (warm-up), subscribe. deactivate: unsubscribe, stop the worker (the model stays
loaded, so pausing is instant). cleanup: free the model. shutdown (also what Ctrl-C does):
stop the worker, then free everything, before the ROS context goes away. The model is loaded
at configure rather than activate so that a missing or corrupt file is reported before
activation. Topic bookkeeping lives in ``topics.py``; the inference loop in ``frame_worker.py``.
With the ``cameras`` parameter one node serves several cameras: one worker, one model, one
batched inference of every camera's newest frame, and one diagnostics status per camera.
"""

import os
import signal
import time
from typing import Dict, Optional, Sequence

from affordance_grounding.inference.backends import BackendOptions, InferenceBackend
from affordance_grounding.inference.io_spec import BackendUnavailableError, ModelFileError
from affordance_grounding.inference.selection import select_backend
from affordance_grounding.inference.text_encoder import open_text_fallback
from affordance_grounding.perception.allocator import keep_large_buffers
from affordance_grounding.perception.frame_pipeline import FramePipeline
from affordance_grounding.perception.latest_frames import LatestFrames
from affordance_grounding.perception.stamps import stamp_to_ns
from affordance_grounding.ros.frame_worker import (
    CameraChannel, FrameWorker, recorded_time_advice, SharedState)
from affordance_grounding.ros.health import NodeHealth, summarise_health
from affordance_grounding.ros.messages import to_diagnostic_array
from affordance_grounding.ros.params import (
    declare_and_read, NodeConfig, ParameterError, parse_default_action, update_config)
from affordance_grounding.ros.topics import InputCallbacks, NodeTopics
from affordance_grounding.ros.transport import (
    installed_profile_path, loss_advice, profile_in_use, TransportLossMonitor)
from affordance_grounding.vocabulary import ActionCommand, LABEL_SETS, parse_action_command
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

NODE_NAME = 'affordance_grounding'
DIAGNOSTIC_NAME = f'{NODE_NAME}: inference'
RCLError = rclpy_implementation.RCLError
CONFIGURE_ERRORS = (ParameterError, ModelFileError, BackendUnavailableError, ValueError,
                    OSError)


def load_backend(config: NodeConfig) -> InferenceBackend:
    """Select and load the backend the parameters ask for (errors name the fix)."""
    if not config.model_path:
        raise ParameterError('parameter model_path is empty; set it to an engine (.engine), '
                             'ONNX (.onnx) or checkpoint (.pt) file, e.g. '
                             '--ros-args -p model_path:=/path/model.onnx')
    options = BackendOptions(calibration=config.calibration,
                             expected_labels=LABEL_SETS.get(config.labels),
                             precision=config.precision,
                             engine_cache_dir=os.path.expanduser(config.engine_cache_dir),
                             cpu_spin_wait=False)  # the worker pre/post-processes between runs
    return select_backend(config.backend, os.path.expanduser(config.model_path), config.device,
                          options)


class AffordanceNode(LifecycleNode):
    """Images + action commands in; heatmap, grasp mask, overlay, 3D grasp point out."""

    def __init__(self, **kwargs):
        """Create the node; nothing is loaded before configure."""
        super().__init__(NODE_NAME, **kwargs)
        self.declare_parameter('autostart', True, ParameterDescriptor(
            description='Configure and activate on start-up (no lifecycle manager needed)',
            read_only=True))
        self.health = NodeHealth()
        self.mailbox: LatestFrames = LatestFrames()  # newest unread frame per camera
        self.channels: Dict[str, CameraChannel] = {}  # camera ('' = the single one) -> channel
        self._camera_actions: Dict[str, str] = {}  # named camera -> action it last announced
        self.state: Optional[SharedState] = None
        self.backend: Optional[InferenceBackend] = None
        self.phase = 'unconfigured'
        self.failure = ''
        self.topics = NodeTopics(self)
        self._text_matcher = None
        self._action_description = ''
        self._worker: Optional[FrameWorker] = None
        self._parameter_handle = None
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diagnostics_timer = None
        self._transport_loss = TransportLossMonitor(time.monotonic)
        self._profile_path = installed_profile_path()

    def on_configure(self, state) -> TransitionCallbackReturn:
        """Read parameters, load the model, create publishers."""
        try:
            config = declare_and_read(self)
            self._start_diagnostics(config.diagnostic_period)
            self.backend = load_backend(config)
            self._text_matcher = self._load_text_matcher(config)
            command = parse_default_action(config, self.backend.metadata.labels,
                                           self._text_matcher)
        except CONFIGURE_ERRORS as error:
            self.failure = f'configure failed: {error}'
            self.phase = 'unconfigured'
            self.get_logger().error(self.failure)
            return TransitionCallbackReturn.FAILURE
        self.state = SharedState(config, command.key)
        self._action_description = command.describe()
        self.channels = {
            camera: CameraChannel(camera, outputs, self.health if not camera else NodeHealth())
            for camera, outputs in self.topics.create_publishers(config).items()}
        self._parameter_handle = self.add_on_set_parameters_callback(self._on_set_parameters)
        self.failure, self.phase = '', 'inactive'
        self.get_logger().info(f'model {config.model_path}: {self.backend.describe()}, '
                               f'{len(self.backend.metadata.labels)} labels')
        return super().on_configure(state)

    def on_activate(self, state) -> TransitionCallbackReturn:
        """Start the worker and subscribe."""
        self.mailbox.reopen()
        self._worker = FrameWorker(FramePipeline(self.backend), self.mailbox, self.state,
                                   self.channels, self.health, self)
        self._worker.start()
        self.topics.subscribe(self.state.config, InputCallbacks(
            image=self._on_image, action=self._on_action, depth=self._on_depth,
            camera_info=self._on_camera_info, lost=self._on_lost))
        result = super().on_activate(state)
        self.topics.active_action.publish(String(data=self._action_description))
        self._camera_actions = {}
        self._announce_camera_actions()
        for line in self.topics.describe():
            self.get_logger().info(line)
        self.phase = 'active'
        return result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        """Unsubscribe and stop the worker; the model stays loaded."""
        self._stop_inference()
        self.phase = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        """Free the model and the publishers."""
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        """Stop everything."""
        self._stop_inference()
        self._release()
        return super().on_shutdown(state)

    def start(self) -> bool:
        """Configure and activate (autostart); returns True when the node is active."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def _stop_inference(self) -> None:
        self.topics.unsubscribe()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def _release(self) -> None:
        if self._parameter_handle is not None:
            self.remove_on_set_parameters_callback(self._parameter_handle)
            self._parameter_handle = None
        self.topics.destroy_publishers()
        if self.backend is not None:
            self.backend.close()
        self.backend, self.state, self.phase = None, None, 'unconfigured'
        self.channels = {}
        self._text_matcher = None

    def _camera_healths(self, camera: str) -> list:
        """Return the node's statistics and, for a named camera, its own."""
        own = self.channels[camera].health
        return [self.health] + ([own] if own is not self.health else [])

    def _on_image(self, msg, camera: str = '') -> None:
        for health in self._camera_healths(camera):
            health.count_input()
        self.mailbox.put(msg, camera)

    def _on_lost(self, count: int, camera: str = '') -> None:
        for health in self._camera_healths(camera):
            health.count_lost(count)

    def _on_depth(self, msg: Image, camera: str = '') -> None:
        self.channels[camera].depth.add(stamp_to_ns(msg.header.stamp), msg)

    def _on_camera_info(self, msg: CameraInfo, camera: str = '') -> None:
        self.channels[camera].camera_info = msg

    def _load_text_matcher(self, config: NodeConfig):
        """Load the CLIP text fallback for action phrases when ``<model>.text.onnx`` exists."""
        fallback = open_text_fallback(os.path.expanduser(config.model_path),
                                      self.backend.metadata.labels)
        logger = self.get_logger()
        (logger.warning if fallback.failed else logger.info)(fallback.note)
        return fallback.matcher

    def _parse_action(self, text: str, config: NodeConfig) -> ActionCommand:
        return parse_action_command(text, self.backend.metadata.labels, self._text_matcher,
                                    config.action_min_text_margin)

    def _on_action(self, msg: String, camera: Optional[str] = None) -> None:
        """Apply an action for every camera (``camera`` None), or one camera's own.

        On ``<camera>/action`` an empty text drops the camera's own action: it follows the
        shared one again.
        """
        channel = None if camera is None else self.channels[camera]
        try:
            command = self._parse_action(msg.data, self.state.config)
        except ValueError as error:
            current = (channel.action(self.state) if channel else self.state.command)[0]
            where = f' for camera {camera}' if channel else ''
            if self.health.problems.report('bad_action', str(error)):
                self.get_logger().warning(f'[bad_action] rejected action command{where}: '
                                          f'{error}; keeping {current or "idle"!r}')
            return
        if channel is None:
            self._set_command(command)
            return
        channel.command = command.key if command.label else None
        if command.label:
            self.get_logger().info(f'camera {camera}: own action {command.describe()}')
        self._announce_camera_actions()

    def _announce_camera_actions(self) -> None:
        """Publish on ``<camera>/active_action`` what each named camera now runs, if changed."""
        for camera, channel in self.channels.items():
            publisher = channel.publishers.active_action
            if publisher is None:
                continue
            label = channel.action(self.state)[0]
            text = (self._action_description if channel.command is None
                    else f'{label} (own action of camera {camera})')
            if self._camera_actions.get(camera) != text:
                self._camera_actions[camera] = text
                publisher.publish(String(data=text))

    def _set_command(self, command: ActionCommand) -> None:
        if command.describe() == self._action_description:
            return
        self.state.command = command.key
        self._action_description = command.describe()
        self.topics.active_action.publish(String(data=self._action_description))
        self.get_logger().info(f'action: {self._action_description or "idle"}')
        self._announce_camera_actions()

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {parameter.name: parameter.value for parameter in parameters}
        try:
            config = update_config(self.state.config, changes)
            command = parse_default_action(config, self.backend.metadata.labels,
                                           self._text_matcher)
        except (ParameterError, ValueError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        self.state.config = config
        if 'default_action' in changes:
            self._set_command(command)
        return SetParametersResult(successful=True)

    def _start_diagnostics(self, period_s: float) -> None:
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
        # Steady time, not the node's clock: with use_sim_time and no /clock yet (bag not
        # playing, or paused) a ROS-time timer never fires, and diagnostics are needed most then.
        self._diagnostics_timer = self.create_timer(
            period_s, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _traffic_warnings(self, snapshot) -> list:
        """Warnings about the input stream: recorded stamps, images lost in transport."""
        warnings = []
        if snapshot.old_stamp_age_s is not None:
            warnings.append(recorded_time_advice(snapshot.old_stamp_age_s))
        lossy, warn_now = self._transport_loss.update(snapshot.images_received,
                                                      snapshot.lost_in_transport)
        if lossy:
            advice = loss_advice(*self._transport_loss.window, self._profile_path,
                                 profile_in_use())
            warnings.append(advice)
            if warn_now:
                self.get_logger().warning(f'[lost_in_transport] {advice} (this warning '
                                          'repeats at most once a minute)')
        return warnings

    def _publish_diagnostics(self) -> None:
        snapshot = self.health.snapshot()
        command = self.state.command[0] if self.state else ''
        expected_rate_hz = self.state.config.expected_rate_hz if self.state else 0.0
        level, message = summarise_health(snapshot, self.phase, self.failure, command,
                                          expected_rate_hz, self._traffic_warnings(snapshot))
        lost, total = self._transport_loss.window
        extra = {'state': self.phase, 'action': command or 'idle',
                 'backend': self.backend.describe() if self.backend else 'none',
                 'model': self.state.config.model_path if self.state else '',
                 'image transport': self.state.config.image_transport if self.state else '',
                 'frames dropped (newer frame arrived)': str(self.mailbox.dropped),
                 'images lost in transport (last period)': f'{lost} of {total}',
                 'fastdds profile': profile_in_use() or 'none'}
        hardware_id = self.backend.device if self.backend else 'none'
        stamp = self.get_clock().now().to_msg()
        array = to_diagnostic_array(stamp, DIAGNOSTIC_NAME, hardware_id, level, message,
                                    snapshot.to_key_values(extra))
        array.status += [self._camera_status(stamp, camera, channel, hardware_id)
                         for camera, channel in self.channels.items() if camera]
        self._diagnostics.publish(array)

    def _camera_status(self, stamp, camera: str, channel: CameraChannel,
                       hardware_id: str) -> DiagnosticStatus:
        """One named camera's rate, delay and drops, as its own status (``<node>: camera X``)."""
        snapshot = channel.health.snapshot()
        action = channel.action(self.state)[0] if self.state else ''
        expected_rate_hz = self.state.config.expected_rate_hz if self.state else 0.0
        level, message = summarise_health(snapshot, self.phase, self.failure, action,
                                          expected_rate_hz)
        extra = {'camera': camera, 'action': action or 'idle',
                 'own action': 'yes' if channel.command is not None else 'no',
                 'frames dropped (newer frame arrived)':
                     str(self.mailbox.dropped_by_camera.get(camera, 0))}
        return to_diagnostic_array(stamp, camera_status_name(camera), hardware_id, level,
                                   message, snapshot.to_key_values(extra)).status[0]


def camera_status_name(camera: str) -> str:
    """Name of a named camera's DiagnosticStatus (the node's own is ``DIAGNOSTIC_NAME``)."""
    return f'{NODE_NAME}: camera {camera}'


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``affordance_node``: ``affordance_node --ros-args --params-file F``.

    rclpy's own signal handler would shut the context down at once, while the worker may be
    publishing a frame ("publisher's context is invalid"). Here Ctrl-C (and SIGTERM, which
    ros2 launch sends after SIGINT) only ends the spin loop; the node then goes through the
    lifecycle shutdown transition (worker stopped first) before the context is shut down.
    """
    keep_large_buffers()  # MB-sized frame buffers reused, not re-faulted (perception/allocator.py)
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # treat it like Ctrl-C
    node = AffordanceNode()
    executor = SingleThreadedExecutor()  # callbacks are cheap: inference runs in the worker
    executor.add_node(node)
    try:
        if node.get_parameter('autostart').value and not node.start():
            node.get_logger().error('the node stays unconfigured; fix the error above and run '
                                    '`ros2 lifecycle set <node> configure`')
        while rclpy.ok():
            # A bounded wait: Python runs the Ctrl-C handler only between calls.
            executor.spin_once(timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        try:
            node.trigger_shutdown()  # on_shutdown stops the worker, then frees the model
        except RCLError:
            pass  # already finalized (`ros2 lifecycle set <node> shutdown`)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
