"""The ``roi`` and ``detections`` inputs (``roi_source``): what the callbacks do with them.

``roi``: the newest ROI of a camera is kept on its channel and applies to every following
frame. ``detections``: an image goes to the worker only once it is paired with its
detections (:class:`~affordance_grounding.ros.pairing.DetectionPairer`); images given up
are counted as ``no_detections`` with the stamps that did not match. No rclpy here; the node
hands in itself (channels, mailbox, state, health and logger).
"""

from affordance_grounding.perception.detections import roi_region
from affordance_grounding.ros.pairing import DetectionPairer


class RegionInputs:
    """Callbacks of the region inputs of one node; see the module docstring."""

    def __init__(self, node):
        """Bind to the node whose channels and mailbox the inputs feed."""
        self._node = node

    def attach(self, channels, config) -> None:
        """Give every camera a detection pairer when ``roi_source`` is ``detections``."""
        for channel in channels.values():
            channel.detections = (DetectionPairer() if config.roi_source == 'detections'
                                  else None)

    def put_image(self, msg, camera: str = '') -> None:
        """Hand an image to the worker, or keep it until its detections arrive."""
        pairer = self._node.channels[camera].detections
        if pairer is None:
            self._node.mailbox.put(msg, camera)
        else:
            self._deliver(*pairer.add_image(msg, self._node.state.config.sync_slop_s), camera)

    def on_roi(self, msg, camera: str = '') -> None:
        """Keep a camera's newest ROI (it applies from the next frame on)."""
        self._node.channels[camera].roi = roi_region(msg)

    def on_detections(self, msg, camera: str = '') -> None:
        """Pair detections with their waiting image, or keep them for the image to come."""
        pairer = self._node.channels[camera].detections
        self._deliver(*pairer.add_detections(msg, self._node.state.config.sync_slop_s),
                      camera)

    def _deliver(self, paired, problems, camera: str) -> None:
        where = self._node.channels[camera].log_prefix
        for kind, message in problems:
            if self._node.health.problems.report(kind, where + message):
                self._node.get_logger().warning(f'[{kind}] {where}{message}')
        if paired is not None:
            self._node.mailbox.put(paired, camera)
