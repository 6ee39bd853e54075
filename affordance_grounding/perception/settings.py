"""What a model run needs, in one place: the model file and how to run it, how outputs look.

The node (parameters), the bag tool (flags) and ``predict`` (flags) each fill these and load
their backend through :func:`load_backend`, so the three cannot drift apart.
"""

from dataclasses import dataclass
import os
from typing import Optional

from affordance_grounding.inference.backends import BackendOptions, InferenceBackend
from affordance_grounding.inference.selection import select_backend
from affordance_grounding.perception.regions import (
    check_margin, check_max_regions, DEFAULT_MAX_REGIONS, DEFAULT_ROI_MARGIN)
from affordance_grounding.vocabulary import LABEL_SETS
import cv2

DEFAULT_MAX_BATCH = 8


@dataclass(frozen=True)
class ModelSettings:
    """Which model file to run, on what, and how.

    Attributes:
        model_path: Engine (.engine), ONNX (.onnx) or bundle (.pt); ``~`` is expanded.
        backend: ``auto`` (the fastest one that runs here) or a backend name.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto``, ``fp32`` or ``fp16``.
        calibration: The map to return (PyTorch); ONNX and engines must match when set.
        labels: Name of the label set (``seen``, ``unseen``, ``hico_iif``) the model must
            have; None accepts any.
        engine_cache_dir: TensorRT engine cache (None: next to the ONNX); ``~`` is expanded.
        max_batch: Largest batch (TensorRT's optimisation profile).
        cpu_spin_wait: ONNX Runtime CPU: spin idle threads after a run. Off where pre- and
            post-processing run between two inferences (the node, the bag tool).
    """

    model_path: str
    backend: str = 'auto'
    device: str = 'auto'
    precision: str = 'auto'
    calibration: Optional[str] = None
    labels: Optional[str] = None
    engine_cache_dir: Optional[str] = None
    max_batch: int = DEFAULT_MAX_BATCH
    cpu_spin_wait: bool = True

    def backend_options(self) -> BackendOptions:
        """Return the options every backend reads."""
        cache_dir = self.engine_cache_dir
        return BackendOptions(
            calibration=self.calibration,
            expected_labels=LABEL_SETS.get(self.labels) if self.labels else None,
            precision=self.precision, cpu_spin_wait=self.cpu_spin_wait,
            engine_cache_dir=os.path.expanduser(cache_dir) if cache_dir else None,
            max_batch=self.max_batch)


def load_backend(settings: ModelSettings) -> InferenceBackend:
    """Select and load the backend the settings ask for (errors name the fix).

    Raises:
        ModelFileError: The file is missing, unreadable or not a model of ours.
        BackendUnavailableError: The backend or device cannot run here.
    """
    return select_backend(settings.backend, os.path.expanduser(settings.model_path),
                          settings.device, settings.backend_options())


@dataclass(frozen=True)
class OutputSettings:
    """How outputs are shaped (node parameters that may change while the node runs).

    Attributes:
        heatmap_resolution: ``input`` (undo the model's resize) or ``model`` (S x S).
        mask_threshold: Heatmap value in [0, 1] at which a pixel joins the grasp mask.
        mask_largest_component: Keep only the largest connected region of the mask.
        overlay_alpha: Heatmap weight in the overlay blend.
        colormap: OpenCV colormap id of the overlay.
    """

    heatmap_resolution: str = 'input'
    mask_threshold: float = 0.5
    mask_largest_component: bool = True
    overlay_alpha: float = 0.5
    colormap: int = cv2.COLORMAP_JET


@dataclass(frozen=True)
class RegionSettings:
    """How object regions (a fixed ROI or a detector's boxes) become model inputs.

    Attributes:
        margin: Fraction of a box's longer side added on each side of its square crop.
        max_regions: Most regions run per frame, the largest first; the rest are counted.
    """

    margin: float = DEFAULT_ROI_MARGIN
    max_regions: int = DEFAULT_MAX_REGIONS

    def __post_init__(self):
        """Check both values once (a configuration error, never a per-frame one)."""
        check_margin(self.margin)
        check_max_regions(self.max_regions)
