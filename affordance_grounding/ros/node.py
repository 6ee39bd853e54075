"""The affordance grounding lifecycle node (docs/ros_interface.md): glue between ROS and runtime.

configure: read and validate parameters, load the model (a bad file fails here, with the
reason in the log and on /diagnostics), create publishers. activate: start the inference
worker (warm-up), subscribe. deactivate: unsubscribe, stop the worker (the model stays
loaded, so pausing is instant). cleanup: free the model. The model is loaded at configure
rather than activate so that a missing or corrupt file is reported before activation.
"""

import os
from typing import List, Optional, Sequence

from affordance_grounding.ros import qos
from affordance_grounding.ros.frame_worker import (
    FrameWorker, OutputPublishers, SharedState, stamp_to_ns)
from affordance_grounding.ros.health import NodeHealth, summarise_health
from affordance_grounding.ros.messages import to_diagnostic_array
from affordance_grounding.ros.params import (
    declare_and_read, NodeConfig, ParameterError, update_config)
from affordance_grounding.runtime.backends import BackendOptions, InferenceBackend
from affordance_grounding.runtime.frame_pipeline import FramePipeline
from affordance_grounding.runtime.io_spec import BackendUnavailableError, ModelFileError
from affordance_grounding.runtime.latest_mailbox import LatestMailbox
from affordance_grounding.runtime.selection import select_backend
from affordance_grounding.vocabulary import LABEL_SETS, parse_action_command
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

NODE_NAME = 'affordance_grounding'
DIAGNOSTIC_NAME = f'{NODE_NAME}: inference'
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
        self.mailbox: LatestMailbox[Image] = LatestMailbox()
        self.state: Optional[SharedState] = None
        self.backend: Optional[InferenceBackend] = None
        self.phase = 'unconfigured'
        self.failure = ''
        self._output_pubs: Optional[OutputPublishers] = None
        self._active_action_pub = None
        self._input_subs: List = []
        self._worker: Optional[FrameWorker] = None
        self._parameter_handle = None
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diagnostics_timer = None

    def on_configure(self, state) -> TransitionCallbackReturn:
        """Read parameters, load the model, create publishers."""
        try:
            config = declare_and_read(self)
            self._start_diagnostics(config.diagnostic_period)
            self.backend = load_backend(config)
            command = parse_action_command(config.default_action, self.backend.metadata.labels)
        except CONFIGURE_ERRORS as error:
            self.failure = f'configure failed: {error}'
            self.phase = 'unconfigured'
            self.get_logger().error(self.failure)
            return TransitionCallbackReturn.FAILURE
        self.state = SharedState(config, command)
        self._create_publishers(config)
        self._parameter_handle = self.add_on_set_parameters_callback(self._on_set_parameters)
        self.failure, self.phase = '', 'inactive'
        self.get_logger().info(f'model {config.model_path}: {self.backend.describe()}, '
                               f'{len(self.backend.metadata.labels)} labels')
        return super().on_configure(state)

    def on_activate(self, state) -> TransitionCallbackReturn:
        """Start the worker and subscribe."""
        self.mailbox.reopen()
        self._worker = FrameWorker(FramePipeline(self.backend), self.mailbox, self.state,
                                   self._output_pubs, self.health, self)
        self._worker.start()
        self._create_subscriptions(self.state.config)
        result = super().on_activate(state)
        self._active_action_pub.publish(String(data=self.state.command[0]))
        self._log_topics()
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

    def _create_publishers(self, config: NodeConfig) -> None:
        overrides = QoSOverridingOptions.with_default_policies()

        def publisher(msg_type, topic, profile=qos.RELIABLE):
            return self.create_lifecycle_publisher(msg_type, topic, profile,
                                                   qos_overriding_options=overrides)
        self._output_pubs = OutputPublishers(
            publisher(Image, 'heatmap'), publisher(Image, 'grasp_mask'),
            publisher(Image, 'overlay'))
        if config.enable_3d:
            self._output_pubs.grasp_point = publisher(PointStamped, 'grasp_point')
            self._output_pubs.markers = publisher(MarkerArray, 'markers')
        self._active_action_pub = publisher(String, 'active_action', qos.LATCHED)

    def _create_subscriptions(self, config: NodeConfig) -> None:
        overrides = QoSOverridingOptions.with_default_policies()
        topics = [(Image, 'image', self._on_image, qos.image_qos(config.image_qos)),
                  (String, 'action', self._on_action, qos.COMMANDS)]
        if config.enable_3d:
            topics += [(Image, 'depth', self._on_depth, qos.image_qos(config.image_qos)),
                       (CameraInfo, 'camera_info', self._on_camera_info,
                        qos.image_qos(config.image_qos))]
        self._input_subs = [self.create_subscription(msg_type, topic, callback, profile,
                                                     qos_overriding_options=overrides)
                            for msg_type, topic, callback, profile in topics[1:]]
        lost = SubscriptionEventCallbacks(
            message_lost=lambda info: self.health.count_lost(info.total_count_change))
        self._input_subs.insert(0, self.create_subscription(
            *topics[0], qos_overriding_options=overrides, event_callbacks=lost))

    def _log_topics(self) -> None:
        publishers = [p for p in vars(self._output_pubs).values() if p is not None]
        for direction, entities in (('in ', self._input_subs),
                                    ('out', publishers + [self._active_action_pub])):
            for entity in entities:
                self.get_logger().info(f'{direction} {entity.topic_name} '
                                       f'[{entity.msg_type.__name__}] '
                                       f'qos {qos.describe_qos(entity.qos_profile)}')

    def _stop_inference(self) -> None:
        for subscription in self._input_subs:
            self.destroy_subscription(subscription)
        self._input_subs = []
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def _release(self) -> None:
        if self._parameter_handle is not None:
            self.remove_on_set_parameters_callback(self._parameter_handle)
            self._parameter_handle = None
        publishers = [] if self._output_pubs is None else list(vars(self._output_pubs).values())
        for publisher in publishers + [self._active_action_pub]:
            if publisher is not None:
                self.destroy_lifecycle_publisher(publisher)
        self._output_pubs = self._active_action_pub = None
        if self.backend is not None:
            self.backend.close()
        self.backend, self.state, self.phase = None, None, 'unconfigured'

    def _on_image(self, msg: Image) -> None:
        self.health.count_input()
        self.mailbox.put(msg)

    def _on_depth(self, msg: Image) -> None:
        self.state.depth.add(stamp_to_ns(msg.header.stamp), msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.state.camera_info = msg

    def _on_action(self, msg: String) -> None:
        try:
            command = parse_action_command(msg.data, self.backend.metadata.labels)
        except ValueError as error:
            if self.health.problems.report('bad_action', str(error)):
                self.get_logger().warning(f'[bad_action] rejected action command: {error}; '
                                          f'keeping {self.state.command[0] or "idle"!r}')
            return
        self._set_command(command)

    def _set_command(self, command) -> None:
        if command == self.state.command:
            return
        self.state.command = command
        self._active_action_pub.publish(String(data=command[0]))
        self.get_logger().info(f'action: {command[0] or "idle"}')

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {parameter.name: parameter.value for parameter in parameters}
        try:
            config = update_config(self.state.config, changes)
            command = parse_action_command(config.default_action, self.backend.metadata.labels)
        except (ParameterError, ValueError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        self.state.config = config
        if 'default_action' in changes:
            self._set_command(command)
        return SetParametersResult(successful=True)

    def _start_diagnostics(self, period_s: float) -> None:
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
        self._diagnostics_timer = self.create_timer(period_s, self._publish_diagnostics)

    def _publish_diagnostics(self) -> None:
        snapshot = self.health.snapshot()
        command = self.state.command[0] if self.state else ''
        expected_rate_hz = self.state.config.expected_rate_hz if self.state else 0.0
        level, message = summarise_health(snapshot, self.phase, self.failure, command,
                                          expected_rate_hz)
        extra = {'state': self.phase, 'action': command or 'idle',
                 'backend': self.backend.describe() if self.backend else 'none',
                 'model': self.state.config.model_path if self.state else '',
                 'frames dropped (newer frame arrived)': str(self.mailbox.dropped)}
        hardware_id = self.backend.device if self.backend else 'none'
        self._diagnostics.publish(to_diagnostic_array(
            self.get_clock().now().to_msg(), DIAGNOSTIC_NAME, hardware_id, level, message,
            snapshot.to_key_values(extra)))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``affordance_node``: ``affordance_node --ros-args --params-file F``."""
    rclpy.init(args=argv)
    node = AffordanceNode()
    executor = SingleThreadedExecutor()  # callbacks are cheap: inference runs in the worker
    executor.add_node(node)
    try:
        if node.get_parameter('autostart').value and not node.start():
            node.get_logger().error('the node stays unconfigured; fix the error above and run '
                                    '`ros2 lifecycle set <node> configure`')
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._stop_inference()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
