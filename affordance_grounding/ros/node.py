"""The affordance grounding lifecycle node (docs/ros_interface.md): ROS <-> frame job glue.

configure: read and validate parameters, load the model (a bad file fails here, with the
reason in the log and on /diagnostics), create publishers. activate: start the inference
worker (warm-up), subscribe. deactivate: unsubscribe, stop the worker (the model stays
loaded, so pausing is instant). cleanup: free the model. shutdown (also what Ctrl-C does):
stop the worker, then free everything, before the ROS context goes away. The model is loaded
at configure rather than activate so that a missing or corrupt file is reported before
activation. Topics live in ``topics.py``, the inference loop in ``frame_worker.py``, actions in
``actions.py``, /diagnostics in ``diagnostics.py``. With the ``cameras`` parameter one node
serves several cameras: one worker, one model, one batched inference of every camera's newest
frame, and one diagnostics status per camera. ``roi_source`` adds object regions: a fixed ROI
or a detector's boxes (``region_inputs.py``), each run as its own crop by the frame job.
"""

from typing import Dict, Optional

from affordance_grounding.inference.io_spec import BackendUnavailableError, ModelFileError
from affordance_grounding.perception.frame_processor import FrameProcessor
from affordance_grounding.perception.latest_frames import LatestFrames
from affordance_grounding.perception.settings import load_backend
from affordance_grounding.perception.stamps import stamp_to_ns
from affordance_grounding.ros.actions import ActionCommands
from affordance_grounding.ros.channels import CameraChannel, SharedState
from affordance_grounding.ros.detection_messages import require_message_packages
from affordance_grounding.ros.diagnostics import NODE_NAME, NodeDiagnostics
from affordance_grounding.ros.frame_worker import FrameWorker
from affordance_grounding.ros.health import NodeHealth
from affordance_grounding.ros.params import (
    declare_and_read, declare_parameters, ParameterError, to_model_settings,
    to_region_settings, update_config)
from affordance_grounding.ros.publishing import publish_result
from affordance_grounding.ros.region_inputs import RegionInputs
from affordance_grounding.ros.topics import InputCallbacks, NodeTopics
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

CONFIGURE_ERRORS = (ParameterError, ModelFileError, BackendUnavailableError, ValueError,
                    OSError)


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
        self.state: Optional[SharedState] = None
        self.backend = None
        self.phase = 'unconfigured'
        self.failure = ''
        self.topics = NodeTopics(self)
        self.actions = ActionCommands(self, self.health)
        self.diagnostics = NodeDiagnostics(self)
        self.region_inputs = RegionInputs(self)  # roi_source: roi / detections
        self._worker: Optional[FrameWorker] = None
        declare_parameters(self)  # visible and settable before configure, which reads them
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def on_configure(self, state) -> TransitionCallbackReturn:
        """Read parameters, load the model, create publishers."""
        try:
            config = declare_and_read(self)
            self.diagnostics.start(config.diagnostic_period)
            require_message_packages(config)  # vision_msgs for detections, before the model
            self.backend = load_backend(to_model_settings(config))
            command = self.actions.load(config, self.backend.metadata.labels)
        except CONFIGURE_ERRORS as error:
            self.failure = f'configure failed: {error}'
            self.phase = 'unconfigured'
            self.get_logger().error(self.failure)
            return TransitionCallbackReturn.FAILURE
        self.state = SharedState(config, command.key)
        self.channels = {
            camera: CameraChannel(camera, outputs, self.health if not camera else NodeHealth())
            for camera, outputs in self.topics.create_publishers(config).items()}
        self.region_inputs.attach(self.channels, config)
        self.failure, self.phase = '', 'inactive'
        self.get_logger().info(f'model {config.model_path}: {self.backend.describe()}, '
                               f'{len(self.backend.metadata.labels)} labels')
        return super().on_configure(state)

    def on_activate(self, state) -> TransitionCallbackReturn:
        """Start the worker and subscribe."""
        self.mailbox.reopen()
        processor = FrameProcessor(self.backend, to_region_settings(self.state.config))
        self._worker = FrameWorker(processor, self.mailbox, self.state, self.channels,
                                   self.health, self, publish_result)
        self._worker.start()
        self.topics.subscribe(self.state.config, InputCallbacks(
            image=self._on_image, action=self._on_action, depth=self._on_depth,
            camera_info=self._on_camera_info, lost=self._on_lost,
            roi=self.region_inputs.on_roi, detections=self.region_inputs.on_detections))
        result = super().on_activate(state)
        self.actions.publish_shared()
        self.actions.announce_cameras(self.state, self.channels, again=True)
        for line in self.topics.describe(self.diagnostics.publisher):
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
        self.get_logger().info('shut down: inference stopped, model freed')
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
        self.topics.destroy_publishers()
        if self.backend is not None:
            self.backend.close()
        self.backend, self.state, self.phase = None, None, 'unconfigured'
        self.channels = {}
        self.actions.release()

    def _on_image(self, msg, camera: str = '') -> None:
        for health in self.channels[camera].healths(self.health):
            health.count_input()
        self.region_inputs.put_image(msg, camera)  # or it waits for its detections

    def _on_lost(self, count: int, camera: str = '') -> None:
        for health in self.channels[camera].healths(self.health):
            health.count_lost(count)

    def _on_depth(self, msg, camera: str = '') -> None:
        self.channels[camera].depth.add(stamp_to_ns(msg.header.stamp), msg)

    def _on_camera_info(self, msg, camera: str = '') -> None:
        self.channels[camera].camera_info = msg

    def _on_action(self, msg, camera: Optional[str] = None) -> None:
        self.actions.on_message(msg.data, self.state, self.channels, camera)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {parameter.name: parameter.value for parameter in parameters}
        running = self.state.config if self.state else None
        try:
            config, waiting = update_config(running, changes, self.phase == 'active')
            command = self.actions.parse_default(config) if config else None
        except (ParameterError, ValueError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        if config is None:
            return SetParametersResult(successful=True)  # configure reads and checks them
        if waiting:
            self.get_logger().info(f'{", ".join(waiting)}: takes effect at the next configure '
                                   '(ros2 lifecycle set <node> cleanup, then configure)')
        self.state.config = config
        if 'default_action' in changes:
            self.actions.set_shared(command, self.state, self.channels)
        return SetParametersResult(successful=True)
