"""The ``affordance_node`` process: rclpy set-up, the executor loop and an orderly shutdown."""

import signal
import sys
from typing import List, Optional, Sequence

from affordance_grounding.perception.allocator import keep_large_buffers
from affordance_grounding.ros.diagnostics import NODE_NAME
from affordance_grounding.ros.node import AffordanceNode
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.signals import SignalHandlerOptions

RCLError = rclpy_implementation.RCLError
UnknownROSArgsError = rclpy_implementation.UnknownROSArgsError


USAGE = f"""usage: affordance_node [-h] [--ros-args [--params-file FILE] [-p NAME:=VALUE]
                       [-r FROM:=TO] ...]

The affordance grounding ROS 2 node '{NODE_NAME}': colour images and an action command
in; heatmap, grasp mask, overlay and, with enable_3d, a 3D grasp point, pose and markers out.
A lifecycle node that configures (loads the model) and activates itself (autostart).

With ros2 launch (namespace /affordance, the installed config/params.yaml):
  ros2 launch affordance_grounding node.launch.py model_path:=/models/model.onnx \\
      image_topic:=/camera/color/image_raw

Directly, with a params file and overrides:
  affordance_node --ros-args -r __ns:=/affordance --params-file config/params.yaml \\
      -p model_path:=/models/model.onnx -r image:=/camera/color/image_raw

Parameters, topics, QoS, lifecycle and diagnostics: docs/ros_interface.md in the source
repository; the defaults with comments: config/params.yaml (installed under
share/affordance_grounding/config); on a running node: ros2 param describe <node> <name>.
"""
HELP_FLAGS = ('-h', '--help')


def arguments_outside_ros_args(args: Sequence[str]) -> List[str]:
    """Return the arguments outside ``--ros-args ... [--]`` sections (the node's own).

    Hand-written: rclpy's ``remove_ros_args`` also parses (and opens) params files and raises
    on an unknown ROS flag, and ``--help`` must work before any of that.
    """
    own, in_ros_args = [], False
    for arg in args:
        if arg == '--ros-args':
            in_ros_args = True
        elif arg == '--' and in_ros_args:
            in_ros_args = False
        elif not in_ros_args:
            own.append(arg)
    return own


def usage_error(message: str) -> int:
    """Print one ``error:`` line and return the exit code of a user error."""
    print(f'error: {message}; see affordance_node --help', file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``affordance_node``: ``affordance_node --ros-args --params-file F``.

    ``-h``/``--help`` prints the usage and returns before rclpy is initialised; any other
    argument outside ``--ros-args`` is an error (exit 2).

    rclpy's own signal handler would shut the context down at once, while the worker may be
    publishing a frame ("publisher's context is invalid"). Here Ctrl-C (and SIGTERM, which
    ros2 launch sends after SIGINT) only ends the spin loop; the node then goes through the
    lifecycle shutdown transition (worker stopped first) before the context is shut down.
    """
    args = list(sys.argv if argv is None else argv)
    own_args = arguments_outside_ros_args(args[1:])
    if any(arg in HELP_FLAGS for arg in own_args):
        print(USAGE, end='')
        return 0
    if own_args:
        return usage_error(f'unknown argument {own_args[0]!r}; affordance_node takes ROS '
                           'arguments only (--ros-args ...)')
    keep_large_buffers()  # MB-sized frame buffers reused, not re-faulted (perception/allocator.py)
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except (RCLError, UnknownROSArgsError) as error:  # e.g. a params file that is not there
        return usage_error(f'bad ROS arguments: {error}')
    # Both explicitly, whatever was inherited: started from a background shell (`nohup`, a
    # script's `&`) SIGINT arrives ignored and Python then installs no KeyboardInterrupt
    # handler, so `kill -INT` (what ros2 launch sends first) would be lost.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # treat it like Ctrl-C
    node = AffordanceNode()
    executor = SingleThreadedExecutor()  # callbacks are cheap: inference runs in the worker
    executor.add_node(node)
    try:
        if node.get_parameter('autostart').value and not node.start():
            node.get_logger().error(
                'the node stays unconfigured; set the parameter named above (`ros2 param set '
                '<node> <name> <value>`), then `ros2 lifecycle set <node> configure` and '
                '`ros2 lifecycle set <node> activate`')
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
