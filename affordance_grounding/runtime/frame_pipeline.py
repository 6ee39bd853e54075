"""One camera frame through a backend: preprocess, infer, pick the action, postprocess.

ROS-free so that the node, the benchmarks and the demo share it. Every stage is timed, which
is how the node reports where its per-frame latency goes.
"""

from dataclasses import dataclass, field
import time
from typing import Dict, List, Optional, Sequence

from affordance_grounding.runtime.backends import InferenceBackend
from affordance_grounding.runtime.grasp import compute_grasp_mask
from affordance_grounding.runtime.postprocess import render_overlay, resize_to_input
from affordance_grounding.runtime.preprocess import ImagePreprocessor
import cv2
import numpy as np
import torch

STAGES = ('preprocess', 'inference', 'postprocess')


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


@dataclass
class FrameOutputs:
    """The outputs of one frame.

    Attributes:
        heatmap: (H, W) float32 in [0, 1]; input resolution, or S x S with ``model``.
        mask: (H, W) uint8 0/255 grasp region, same resolution as ``heatmap``.
        overlay: (H_in, W_in, 3) uint8 BGR overlay at input resolution, or None.
        timings_s: Seconds spent per stage of :data:`STAGES`.
    """

    heatmap: np.ndarray
    mask: np.ndarray
    overlay: Optional[np.ndarray]
    timings_s: Dict[str, float] = field(default_factory=dict)


class FramePipeline:
    """Runs single frames through a loaded backend, reusing one input buffer."""

    def __init__(self, backend: InferenceBackend):
        """Wrap a loaded backend; preprocessing follows the model's own metadata."""
        metadata = backend.metadata
        self.backend = backend
        self.labels = metadata.labels
        self.image_size = metadata.image_size
        self.preprocessor = ImagePreprocessor(metadata.image_size, metadata.mean, metadata.std)
        self._input = torch.empty(1, 3, metadata.image_size, metadata.image_size)  # reused

    def run(self, rgb: np.ndarray, class_index: int, settings: OutputSettings,
            overlay_label: Optional[str] = None) -> FrameOutputs:
        """Compute heatmap, grasp mask and (when ``overlay_label`` is given) the overlay.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            class_index: Index of the action in ``labels``.
            settings: Output resolution, mask threshold, overlay style.
            overlay_label: Text of the overlay; None skips rendering it.

        Returns:
            The frame's outputs and stage timings.

        Raises:
            ValueError: If the image is not (H, W, 3) uint8 or the index is out of range.
        """
        self._check_class_index(class_index)
        start = time.perf_counter()
        batch = self.preprocessor(rgb, out=self._input)  # (1, 3, S, S)
        preprocessed = time.perf_counter()
        network = self.backend.infer(batch).affordance[0, class_index]  # (S, S) in [0, 1]
        inferred = time.perf_counter()
        outputs = self._finish(rgb, network, settings, overlay_label)
        outputs.timings_s = {'preprocess': preprocessed - start,
                             'inference': inferred - preprocessed,
                             'postprocess': time.perf_counter() - inferred}
        return outputs

    def run_batch(self, rgbs: Sequence[np.ndarray], class_indices: Sequence[int],
                  settings: OutputSettings,
                  overlay_labels: Sequence[Optional[str]]) -> List[FrameOutputs]:
        """Like :meth:`run` for several frames in one backend call (offline throughput).

        The frames may differ in size and action. Each frame's timings are the batch's stage
        times divided by the batch size.

        Args:
            rgbs: B (H_i, W_i, 3) uint8 RGB images.
            class_indices: B label indices, one per frame.
            settings: Output resolution, mask threshold, overlay style (all frames).
            overlay_labels: B overlay texts; None skips a frame's overlay.

        Returns:
            B outputs, in input order.

        Raises:
            ValueError: If a frame or an index is invalid, or the lengths differ.
        """
        if not len(rgbs) == len(class_indices) == len(overlay_labels) or not rgbs:
            raise ValueError(f'run_batch needs as many images ({len(rgbs)}, at least one) as '
                             f'class indices ({len(class_indices)}) and overlay labels '
                             f'({len(overlay_labels)})')
        for class_index in class_indices:
            self._check_class_index(class_index)
        start = time.perf_counter()
        size = self.image_size
        batch = torch.empty(len(rgbs), 3, size, size)  # (B, 3, S, S)
        for row, rgb in enumerate(rgbs):
            self.preprocessor(rgb, out=batch[row:row + 1])
        preprocessed = time.perf_counter()
        affordance = self.backend.infer(batch).affordance  # (B, K, S, S) in [0, 1]
        inferred = time.perf_counter()
        outputs = [self._finish(rgb, affordance[row, class_index], settings, label)
                   for row, (rgb, class_index, label)
                   in enumerate(zip(rgbs, class_indices, overlay_labels))]
        finished = time.perf_counter()
        share = 1.0 / len(rgbs)
        for frame_outputs in outputs:
            frame_outputs.timings_s = {'preprocess': (preprocessed - start) * share,
                                       'inference': (inferred - preprocessed) * share,
                                       'postprocess': (finished - inferred) * share}
        return outputs

    def _check_class_index(self, class_index: int) -> None:
        if not 0 <= class_index < len(self.labels):
            raise ValueError(f'class index {class_index} is outside the '
                             f'{len(self.labels)} labels of the model')

    def _finish(self, rgb: np.ndarray, network: np.ndarray, settings: OutputSettings,
                overlay_label: Optional[str]) -> FrameOutputs:
        """Heatmap at the requested resolution, grasp mask and optional overlay of one frame."""
        full = None
        if settings.heatmap_resolution == 'input' or overlay_label is not None:
            full = resize_to_input(network, rgb.shape[:2])  # (H, W): the model's resize undone
        heatmap = full if settings.heatmap_resolution == 'input' else network
        mask = compute_grasp_mask(heatmap, settings.mask_threshold,
                                  settings.mask_largest_component)
        overlay = None
        if overlay_label is not None:
            overlay = render_overlay(rgb, full, overlay_label, settings.overlay_alpha,
                                     settings.colormap)
        return FrameOutputs(heatmap=np.ascontiguousarray(heatmap, dtype=np.float32), mask=mask,
                            overlay=overlay)
