"""The ``affordance_node`` process: rclpy set-up, the executor loop and an orderly shutdown."""

import signal
from typing import Optional, Sequence

from affordance_grounding.perception.allocator import keep_large_buffers
from affordance_grounding.ros.node import AffordanceNode
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.signals import SignalHandlerOptions

RCLError = rclpy_implementation.RCLError


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``affordance_node``: ``affordance_node --ros-args --params-file F``.

    rclpy's own signal handler would shut the context down at once, while the worker may be
    publishing a frame ("publisher's context is invalid"). Here Ctrl-C (and SIGTERM, which
    ros2 launch sends after SIGINT) only ends the spin loop; the node then goes through the
    lifecycle shutdown transition (worker stopped first) before the context is shut down.
    """
    keep_large_buffers()  # MB-sized frame buffers reused, not re-faulted (perception/allocator.py)
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
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
