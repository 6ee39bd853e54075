"""The node's ``/diagnostics``: one status for the node, one per named camera, on steady time.

Steady time, not the node's clock: with ``use_sim_time`` and no ``/clock`` yet (a bag not
playing, or paused) a ROS-time timer never fires, and diagnostics are needed most then.
"""

import time

from affordance_grounding.ros.channels import CameraChannel
from affordance_grounding.ros.frame_worker import recorded_time_advice
from affordance_grounding.ros.health import summarise_health
from affordance_grounding.ros.messages import to_diagnostic_array
from affordance_grounding.ros.transport import (
    installed_profile_path, loss_advice, profile_in_use, TransportLossMonitor)
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.clock import Clock, ClockType
from rclpy.qos_overriding_options import QoSOverridingOptions

NODE_NAME = 'affordance_grounding'
DIAGNOSTIC_NAME = f'{NODE_NAME}: inference'


def camera_status_name(camera: str) -> str:
    """Name of a named camera's DiagnosticStatus (the node's own is ``DIAGNOSTIC_NAME``)."""
    return f'{NODE_NAME}: camera {camera}'


class NodeDiagnostics:
    """Publishes the node's health every period; reads the node's state, changes nothing."""

    def __init__(self, node):
        """Create the ``/diagnostics`` publisher on ``node`` (the timer starts at configure)."""
        self._node = node
        self.publisher = node.create_publisher(
            DiagnosticArray, '/diagnostics', 10,
            qos_overriding_options=QoSOverridingOptions.with_default_policies())
        self._timer = None
        self._transport_loss = TransportLossMonitor(time.monotonic)
        self._profile_path = installed_profile_path()

    def start(self, period_s: float) -> None:
        """(Re)start the timer with ``period_s``."""
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
        self._timer = self._node.create_timer(
            period_s, self.publish, clock=Clock(clock_type=ClockType.STEADY_TIME))

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
                self._node.get_logger().warning(f'[lost_in_transport] {advice} (this warning '
                                                'repeats at most once a minute)')
        return warnings

    def publish(self) -> None:
        """Publish the node's status and one status per named camera."""
        node, state = self._node, self._node.state
        snapshot = node.health.snapshot()
        command = state.command[0] if state else ''
        expected_rate_hz = state.config.expected_rate_hz if state else 0.0
        level, message = summarise_health(snapshot, node.phase, node.failure, command,
                                          expected_rate_hz, self._traffic_warnings(snapshot))
        lost, total = self._transport_loss.window
        extra = {'state': node.phase, 'action': command or 'idle',
                 'backend': node.backend.describe() if node.backend else 'none',
                 'model': state.config.model_path if state else '',
                 'image transport': state.config.image_transport if state else '',
                 'frames dropped (newer frame arrived)': str(node.mailbox.dropped),
                 'images lost in transport (last period)': f'{lost} of {total}',
                 'fastdds profile': profile_in_use() or 'none'}
        hardware_id = node.backend.device if node.backend else 'none'
        stamp = node.get_clock().now().to_msg()
        array = to_diagnostic_array(stamp, DIAGNOSTIC_NAME, hardware_id, level, message,
                                    snapshot.to_key_values(extra))
        array.status += [self._camera_status(stamp, camera, channel, hardware_id)
                         for camera, channel in node.channels.items() if camera]
        self.publisher.publish(array)

    def _camera_status(self, stamp, camera: str, channel: CameraChannel,
                       hardware_id: str) -> DiagnosticStatus:
        """One named camera's rate, delay and drops, as its own status (``<node>: camera X``)."""
        node, state = self._node, self._node.state
        snapshot = channel.health.snapshot()
        action = channel.action(state)[0] if state else ''
        expected_rate_hz = state.config.expected_rate_hz if state else 0.0
        level, message = summarise_health(snapshot, node.phase, node.failure, action,
                                          expected_rate_hz)
        extra = {'camera': camera, 'action': action or 'idle',
                 'own action': 'yes' if channel.command is not None else 'no',
                 'frames dropped (newer frame arrived)':
                     str(node.mailbox.dropped_by_camera.get(camera, 0))}
        return to_diagnostic_array(stamp, camera_status_name(camera), hardware_id, level,
                                   message, snapshot.to_key_values(extra)).status[0]
