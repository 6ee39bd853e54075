"""Node parameters: one frozen dataclass, validated once, declared with descriptors.

Defaults equal config/params.yaml. Parameters whose change needs a new backend, new
subscriptions or new timers are read at configure: as in nav2's lifecycle nodes they can be
set while the node is unconfigured or inactive and take effect at the next configure; while
it is active, setting them is refused with the way out (deactivate first). The others apply at
once. Every parameter is dynamically typed and :func:`_coerce` checks the type, so that
``max_rate_hz: 30`` in YAML is converted instead of failing, and a wrong type from the command
line or ``ros2 param set`` is refused with the parameter's name instead of crashing the node
at declaration; :meth:`NodeConfig.validate` checks the values.
"""

import dataclasses
from dataclasses import dataclass
import re
from typing import Any, Dict, Mapping, Optional, Tuple

from affordance_grounding.config import CALIBRATIONS
from affordance_grounding.inference.selection import BACKEND_NAMES, DEVICE_PATTERN
from affordance_grounding.perception.regions import DEFAULT_MAX_REGIONS, DEFAULT_ROI_MARGIN
from affordance_grounding.perception.settings import (
    ModelSettings, OutputSettings, RegionSettings)
from affordance_grounding.vocabulary import (
    ActionCommand, LABEL_SETS, parse_action_command, TextMatcher)
import cv2

BACKENDS: Tuple[str, ...] = ('auto',) + tuple(BACKEND_NAMES)
HEATMAP_RESOLUTIONS: Tuple[str, ...] = ('input', 'model')
IMAGE_QOS_PROFILES: Tuple[str, ...] = ('sensor_data', 'reliable', 'system_default')
IMAGE_TRANSPORTS: Tuple[str, ...] = ('raw', 'compressed')
PRECISION_CHOICES: Tuple[str, ...] = ('auto', 'fp32', 'fp16')
COLORMAPS: Dict[str, int] = {name[len('COLORMAP_'):].lower(): getattr(cv2, name)
                             for name in dir(cv2) if name.startswith('COLORMAP_')}
CAMERA_NAME_PATTERN = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')  # one ROS name token
ROI_SOURCES: Tuple[str, ...] = ('none', 'roi', 'detections')


class ParameterError(ValueError):
    """A parameter value that the node cannot use."""


@dataclass(frozen=True)
class NodeConfig:
    """Every node parameter (docs/ros_interface.md, "Parameters"); defaults = config/params.yaml.

    Attributes:
        backend: ``auto``, ``tensorrt``, ``onnxruntime`` or ``torch``.
        model_path: Engine (.engine), ONNX (.onnx) or checkpoint bundle (.pt).
        engine_cache_dir: Folder of TensorRT engines built on this machine.
        device: ``cuda``, ``cuda:N``, ``cpu`` or ``auto``.
        precision: Backbone precision: ``auto`` (PyTorch: fp16 autocast on CUDA, fp32 on the
            CPU; TensorRT: the ONNX's own typing), ``fp32`` or ``fp16`` (PyTorch on the CPU
            refuses fp16). ONNX Runtime runs the graph as it was exported.
        calibration: ``none``, ``clip`` or ``clip_local_mean``.
        labels: ``seen``, ``unseen``, ``hico_iif`` or empty for the model's own list.
        default_action: Action used until one arrives on ``action``; empty = idle.
        action_min_text_margin: Smallest lead of the nearest label over the runner-up (centred
            CLIP text cosines) at which an unknown action phrase maps to it (needs
            ``<model>.text.onnx``); -2 accepts every phrase.
        heatmap_resolution: ``input`` (camera resolution) or ``model`` (network size).
        mask_threshold: Heatmap value in [0, 1] at which a pixel joins the grasp mask.
        mask_largest_component: Keep only the largest connected region of the mask.
        overlay_alpha: Heatmap weight in [0, 1] in the overlay blend.
        colormap: OpenCV colormap name of the overlay (``jet``, ``turbo``, ...).
        publish_overlay: Render the overlay (still only while someone subscribes).
        max_rate_hz: Highest inference rate; 0 = as fast as frames arrive.
        max_image_age_s: Drop frames older than this (header stamp); 0 = never drop.
        image_qos: QoS of the image inputs: ``sensor_data``, ``reliable``, ``system_default``.
        image_transport: ``raw`` (sensor_msgs/Image on ``image``) or ``compressed``
            (sensor_msgs/CompressedImage on ``<image>/compressed``, jpeg or png).
        enable_3d: Subscribe to depth + camera_info and publish the grasp point and markers.
        sync_slop_s: Largest stamp difference between a colour and a depth image to pair.
        diagnostic_period: Seconds between /diagnostics messages.
        expected_rate_hz: Output rate below which diagnostics report a warning.
        cameras: Camera names; empty = one camera on today's topics. With names, every
            camera has its inputs and outputs under ``<camera>/`` and all cameras' newest
            frames run as one batch (docs/ros_interface.md).
        roi_source: Where object regions come from: ``none`` (the whole frame), ``roi``
            (sensor_msgs/RegionOfInterest on ``roi``) or ``detections``
            (vision_msgs/Detection2DArray on ``detections``, paired by stamp).
        roi_margin: Fraction of a box's longer side added on each side of its crop.
        max_regions: Most regions run per frame, the largest first; the rest are counted.
        worker_overlap: Post-process and publish one batch in a second thread while the next
            one infers (docs/benchmarks.md, "Overlapping the worker's stages").
    """

    backend: str = 'auto'
    model_path: str = ''
    engine_cache_dir: str = '~/.cache/affordance_grounding/engines'
    device: str = 'auto'
    precision: str = 'auto'
    calibration: str = 'clip'
    labels: str = 'seen'
    default_action: str = ''
    action_min_text_margin: float = 0.25
    heatmap_resolution: str = 'input'
    mask_threshold: float = 0.5
    mask_largest_component: bool = True
    overlay_alpha: float = 0.5
    colormap: str = 'jet'
    publish_overlay: bool = True
    max_rate_hz: float = 30.0
    max_image_age_s: float = 0.5
    image_qos: str = 'sensor_data'
    image_transport: str = 'raw'
    enable_3d: bool = False
    sync_slop_s: float = 0.05
    diagnostic_period: float = 1.0
    expected_rate_hz: float = 10.0
    cameras: Tuple[str, ...] = ()
    roi_source: str = 'none'
    roi_margin: float = DEFAULT_ROI_MARGIN
    max_regions: int = DEFAULT_MAX_REGIONS
    worker_overlap: bool = True

    def validate(self) -> 'NodeConfig':
        """Check every value; return ``self`` so that calls chain.

        Raises:
            ParameterError: Naming the parameter, the offending value and what is allowed.
        """
        for name, allowed in (('backend', BACKENDS), ('calibration', CALIBRATIONS),
                              ('precision', PRECISION_CHOICES),
                              ('heatmap_resolution', HEATMAP_RESOLUTIONS),
                              ('image_qos', IMAGE_QOS_PROFILES),
                              ('image_transport', IMAGE_TRANSPORTS),
                              ('labels', ('',) + tuple(LABEL_SETS)),
                              ('roi_source', ROI_SOURCES),
                              ('colormap', tuple(sorted(COLORMAPS)))):
            _check_choice(name, getattr(self, name), allowed)
        if not DEVICE_PATTERN.match(self.device):
            raise ParameterError(f'parameter device={self.device!r} is invalid; expected cuda, '
                                 'cuda:N (e.g. cuda:0), cpu or auto')
        for name, low, high in (('mask_threshold', 0.0, 1.0), ('overlay_alpha', 0.0, 1.0),
                                ('action_min_text_margin', -2.0, 2.0)):
            _check_range(name, getattr(self, name), low, high, '[{low}, {high}]')
        for name in ('max_rate_hz', 'max_image_age_s'):
            _check_range(name, getattr(self, name), 0.0, float('inf'), '>= 0 (0 disables)')
        for name in ('sync_slop_s', 'diagnostic_period', 'expected_rate_hz'):
            _check_range(name, getattr(self, name), 0.0, float('inf'), '> 0', open_low=True)
        _check_range('roi_margin', self.roi_margin, 0.0, 10.0,
                     '[{low}, {high}] (a fraction of the box, e.g. 0.25)')
        if isinstance(self.max_regions, bool) or self.max_regions < 1:
            raise ParameterError(f'parameter max_regions={self.max_regions!r} is out of range; '
                                 'expected a whole number >= 1')
        for name in self.cameras:
            if not CAMERA_NAME_PATTERN.match(name):
                raise ParameterError(f'parameter cameras: {name!r} is not a valid camera name; '
                                     'use letters, digits and underscores, starting with a '
                                     "letter (it becomes a topic namespace, e.g. 'head')")
        if len(set(self.cameras)) != len(self.cameras):
            raise ParameterError(f'parameter cameras={list(self.cameras)} names a camera twice')
        # default_action is checked by parse_default_action once the model (its labels and
        # text fallback) is loaded: the action topic's parser decides, not a list here.
        return self


def parse_default_action(config: NodeConfig, labels: Tuple[str, ...],
                         text_matcher: Optional[TextMatcher] = None) -> ActionCommand:
    """Parse ``default_action`` exactly as the ``action`` topic parses a command.

    Raises:
        ParameterError: Naming the parameter, with the parser's reason and the known labels.
    """
    try:
        return parse_action_command(config.default_action, labels, text_matcher,
                                    config.action_min_text_margin)
    except ValueError as error:
        raise ParameterError(f'parameter default_action={config.default_action!r} is '
                             f'invalid: {error}') from None


def _check_choice(name: str, value: Any, allowed: Tuple[str, ...], context: str = '') -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ParameterError(f'parameter {name}={value!r} is invalid{context}; expected one of '
                             f'{list(allowed)}')


def _check_range(name: str, value: float, low: float, high: float, allowed: str,
                 open_low: bool = False) -> None:
    """Raise unless ``low <= value <= high`` (``low < value`` when ``open_low``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f'parameter {name}={value!r} must be a number; expected '
                             + allowed.format(low=low, high=high))
    too_low = value <= low if open_low else value < low
    if not value == value or too_low or value > high:  # NaN fails the first test
        raise ParameterError(f'parameter {name}={value!r} is out of range; expected '
                             + allowed.format(low=low, high=high))


# name -> (description, read at configure). Those take effect at the next configure.
DESCRIPTIONS: Dict[str, Tuple[str, bool]] = {
    'backend': (f'Inference backend: {" | ".join(BACKENDS)}', True),
    'model_path': ('Engine (.engine), ONNX (.onnx) or checkpoint bundle (.pt)', True),
    'engine_cache_dir': ('Folder of TensorRT engines built on this machine', True),
    'device': ('cuda, cuda:N, cpu or auto', True),
    'precision': ('Backbone precision: auto (fp16 on CUDA where the backend can, fp32 on the '
                  'CPU) | fp32 | fp16', True),
    'calibration': (f'Test-time calibration: {" | ".join(CALIBRATIONS)}', True),
    'labels': ('Label set: seen | unseen | hico_iif, or empty for the model list', True),
    'default_action': ('Action used until one arrives on the action topic; empty = idle',
                       False),
    'action_min_text_margin': ('Smallest lead of the nearest label over the runner-up (centred '
                               'CLIP text cosines) mapping an unknown action phrase to it '
                               '(needs <model>.text.onnx)', False),
    'heatmap_resolution': ('Output resolution: input (camera) | model (network)', True),
    'mask_threshold': ('Heatmap value in [0, 1] at which a pixel joins the grasp mask', False),
    'mask_largest_component': ('Keep only the largest connected grasp region', False),
    'overlay_alpha': ('Heatmap weight in [0, 1] in the overlay', False),
    'colormap': ('OpenCV colormap name of the overlay (jet, turbo, viridis, ...)', False),
    'publish_overlay': ('Render the overlay (only while it has subscribers)', False),
    'max_rate_hz': ('Highest inference rate in Hz; 0 = every frame', False),
    'max_image_age_s': ('Drop frames older than this many seconds; 0 = never', False),
    'image_qos': (f'QoS of image inputs: {" | ".join(IMAGE_QOS_PROFILES)}', True),
    'image_transport': ('Colour input: raw (Image on image) | compressed (CompressedImage on '
                        'image/compressed); depth stays raw', True),
    'enable_3d': ('Use depth + camera_info to publish grasp_point and markers', True),
    'sync_slop_s': ('Largest colour/depth stamp difference in seconds to pair them', False),
    'diagnostic_period': ('Seconds between /diagnostics messages', True),
    'expected_rate_hz': ('Output rate in Hz below which diagnostics warn', True),
    'cameras': ('Camera names, e.g. [head, wrist]: inputs and outputs under <camera>/, one '
                'batched inference; empty = one camera on image, heatmap, ...', True),
    'roi_source': ('Object regions: none (whole frame) | roi (RegionOfInterest on roi) | '
                   'detections (Detection2DArray on detections, needs vision_msgs)', True),
    'roi_margin': ("Fraction of a box's longer side added on each side of its crop", False),
    'max_regions': ('Most regions per frame, the largest first; the rest are counted', False),
    'worker_overlap': ('Post-process and publish one batch while the next infers (two '
                       'threads); false = one thread', True),
}


READ_AT_CONFIGURE = frozenset(name for name, (_, at_configure) in DESCRIPTIONS.items()
                              if at_configure)


def build_descriptor(name: str):
    """Return the ``ParameterDescriptor`` of one parameter (dynamically typed, see above).

    A string array declared empty would get rclpy's type BYTE_ARRAY and refuse strings, which
    is one more reason for dynamic typing. The message package is imported here, not at the
    top, so that the configuration itself loads without ROS.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    description, at_configure = DESCRIPTIONS[name]
    constraints = ('read at configure: set it while the node is unconfigured or inactive'
                   if at_configure else 'applies at once')
    return ParameterDescriptor(name=name, description=description, dynamic_typing=True,
                               additional_constraints=constraints)


def declare_parameters(node) -> None:
    """Declare every parameter of :class:`NodeConfig` that ``node`` does not have yet."""
    for field in dataclasses.fields(NodeConfig):
        if not node.has_parameter(field.name):
            default = list(field.default) if isinstance(field.default, tuple) else field.default
            node.declare_parameter(field.name, default, build_descriptor(field.name))


def declare_and_read(node) -> NodeConfig:
    """Declare every parameter on ``node`` and return the validated configuration.

    Args:
        node: An ``rclpy`` node (plain or lifecycle).

    Returns:
        The :class:`NodeConfig` built from defaults, YAML files, overrides and values set
        since (configure reads the current values, so a fixed parameter is picked up).

    Raises:
        ParameterError: If a value has the wrong type or fails :meth:`NodeConfig.validate`.
    """
    declare_parameters(node)
    return NodeConfig(**{
        field.name: _coerce(field.name, node.get_parameter(field.name).value, field.default)
        for field in dataclasses.fields(NodeConfig)}).validate()


def update_config(config: Optional[NodeConfig], changes: Mapping[str, Any],
                  active: bool) -> Tuple[Optional[NodeConfig], Tuple[str, ...]]:
    """Check parameter changes and apply the run-time ones (an ``on_set_parameters`` callback).

    Args:
        config: The running configuration; None while the node is unconfigured.
        changes: Parameter name -> new value; names that are not node parameters (e.g.
            ``use_sim_time``) are ignored.
        active: Whether the node is active (parameters read at configure are then refused).

    Returns:
        The new running configuration with the run-time changes applied (None while
        unconfigured: values are checked at configure), and the changed parameters that are
        read at configure and so wait for the next configure. ``config`` is unchanged.

    Raises:
        ParameterError: If a value has the wrong type or is invalid, or a parameter read at
            configure changes while the node is active.
    """
    coerced = {field.name: _coerce(field.name, changes[field.name], field.default)
               for field in dataclasses.fields(NodeConfig) if field.name in changes}
    waiting = tuple(name for name, value in coerced.items() if name in READ_AT_CONFIGURE
                    and (config is None or value != getattr(config, name)))
    if waiting and active:
        raise ParameterError(
            f'parameter {", ".join(waiting)} is read at configure and the node is active; '
            'deactivate it first (ros2 lifecycle set <node> deactivate), set the parameter, '
            'then cleanup, configure and activate')
    if config is None:
        return None, waiting
    run_time = {name: value for name, value in coerced.items()
                if name not in READ_AT_CONFIGURE}
    return dataclasses.replace(config, **run_time).validate(), waiting


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Convert an integer to float for float parameters; reject any other type change.

    String arrays become tuples (the configuration is frozen); an empty YAML list arrives as
    an unset value (None).
    """
    if isinstance(default, tuple):
        if value is None:
            return ()
        if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ParameterError(f'parameter {name}={value!r} must be a list of strings, e.g. '
                             '[head, wrist]')
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise ParameterError(f'parameter {name}={value!r} has type {type(value).__name__}; '
                             f'expected {type(default).__name__}')
    return value


def to_model_settings(config: NodeConfig) -> ModelSettings:
    """Return what loading the model needs (errors name the parameter to fix).

    Raises:
        ParameterError: If ``model_path`` is empty.
    """
    if not config.model_path:
        raise ParameterError('parameter model_path is empty; set it to an engine (.engine), '
                             'ONNX (.onnx) or checkpoint (.pt) file, e.g. '
                             '--ros-args -p model_path:=/path/model.onnx')
    return ModelSettings(model_path=config.model_path, backend=config.backend,
                         device=config.device, precision=config.precision,
                         calibration=config.calibration, labels=config.labels,
                         engine_cache_dir=config.engine_cache_dir,
                         cpu_spin_wait=False)  # the worker pre/post-processes between runs


def to_region_settings(config: NodeConfig) -> RegionSettings:
    """Return how regions are cut out and how many run (checked by ``validate``)."""
    return RegionSettings(margin=config.roi_margin, max_regions=config.max_regions)


def to_output_settings(config: NodeConfig) -> OutputSettings:
    """Return the output-shaping parameters of a configuration."""
    return OutputSettings(heatmap_resolution=config.heatmap_resolution,
                          mask_threshold=config.mask_threshold,
                          mask_largest_component=config.mask_largest_component,
                          overlay_alpha=config.overlay_alpha,
                          colormap=COLORMAPS[config.colormap])
