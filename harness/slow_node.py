"""The node with every backend slowed to a fixed minimum time per batch, for stream tests.

``python -m harness.slow_node --ros-args ...`` with ``AFFORDANCE_MIN_INFERENCE_S`` set runs
the ordinary node, except that each ``InferenceBackend.infer`` call takes at least that long.
A test that needs "a model slower than the camera" then holds on any machine, fast or slow,
instead of depending on how fast this CPU runs a particular model.
"""

import os
import time

from affordance_grounding.inference.backend_interface import InferenceBackend
from affordance_grounding.ros import node

MIN_INFERENCE_ENV = 'AFFORDANCE_MIN_INFERENCE_S'


def slow_down_backends(min_inference_s: float) -> None:
    """Make every backend's ``infer`` last at least ``min_inference_s`` (sleeps the rest)."""
    infer = InferenceBackend.infer

    def infer_at_least(self, images):
        started = time.monotonic()
        result = infer(self, images)
        time.sleep(max(0.0, min_inference_s - (time.monotonic() - started)))
        return result
    InferenceBackend.infer = infer_at_least


def main() -> int:
    """Slow the backends down as the environment asks, then run the node's ``main``."""
    slow_down_backends(float(os.environ.get(MIN_INFERENCE_ENV, '0')))
    return node.main()


if __name__ == '__main__':
    raise SystemExit(main())
