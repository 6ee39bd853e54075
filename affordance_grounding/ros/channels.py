"""The node's data model, shared by the node, its topics and the worker (no rclpy here).

What the executor thread changes and the worker thread reads: the parameters and the shared
action (:class:`SharedState`), and per camera its publishers, statistics, own action and
3D inputs (:class:`CameraChannel`).
"""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from affordance_grounding.perception.regions import Region
from affordance_grounding.ros.health import NodeHealth
from affordance_grounding.ros.pairing import DetectionPairer, StampedBuffer
from affordance_grounding.ros.params import NodeConfig


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
    affordance_detections: Optional[object] = None  # with roi_source detections
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
        camera_info: Newest ``sensor_msgs/CameraInfo`` (3D only).
        depth: Recent depth images by stamp (3D only).
        roi: Newest ROI from ``<camera>/roi`` (``roi_source: roi``); None before the first.
        detections: Images and detections waiting for each other (``roi_source:
            detections``); None in the other modes.
    """

    name: str
    publishers: OutputPublishers
    health: NodeHealth
    command: Optional[Tuple[str, int]] = None
    camera_info: Optional[object] = None
    depth: StampedBuffer = field(default_factory=StampedBuffer)
    roi: Optional[Region] = None
    detections: Optional[DetectionPairer] = None

    def action(self, state: SharedState) -> Tuple[str, int]:
        """(label, class index) this camera runs: its own action, else the shared one."""
        return self.command if self.command is not None else state.command

    @property
    def log_prefix(self) -> str:
        """``'camera NAME: '`` in front of this camera's log lines; '' for the single camera."""
        return f'camera {self.name}: ' if self.name else ''

    def healths(self, node_health: NodeHealth) -> List[NodeHealth]:
        """Return the statistics this camera's events count in: the node's and its own."""
        return [node_health] + ([self.health] if self.health is not node_health else [])
