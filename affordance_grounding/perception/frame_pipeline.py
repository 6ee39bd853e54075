"""Camera frames through a backend: preprocess, infer, pick the action, postprocess.

ROS-free so that the node, the benchmarks and the demo share it. Every stage is timed, which
is how the node reports where its per-frame latency goes.
"""

from dataclasses import dataclass, field
import time
from typing import Dict, List, Optional, Sequence

from affordance_grounding.inference.backends import InferenceBackend
from affordance_grounding.perception.mask import compute_grasp_mask
from affordance_grounding.perception.postprocess import render_overlay, resize_to_input
from affordance_grounding.perception.preprocess import ImagePreprocessor
from affordance_grounding.perception.settings import OutputSettings
import cv2
import numpy as np
import torch

STAGES = ('preprocess', 'inference', 'postprocess')


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


@dataclass
class InferredRows:
    """One batch through the backend.

    Attributes:
        networks: (B, S, S) float32 map of each row's action, in [0, 1].
        cams: (B, K, G, G) class activation maps of every label (the region scores read them).
        preprocess_s: Seconds spent preprocessing each row.
        inference_s: Seconds of the backend call (every row waited for all of it).
    """

    networks: np.ndarray
    cams: np.ndarray
    preprocess_s: List[float]
    inference_s: float


class FramePipeline:
    """Runs frames (one, or a batch of several cameras) through a loaded backend."""

    def __init__(self, backend: InferenceBackend):
        """Wrap a loaded backend; preprocessing follows the model's own metadata."""
        metadata = backend.metadata
        self.backend = backend
        self.labels = metadata.labels
        self.image_size = metadata.image_size
        self.preprocessor = ImagePreprocessor(metadata.image_size, metadata.mean, metadata.std)
        self._inputs: Dict[int, torch.Tensor] = {}  # reused input buffer per batch size

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
        return self.run_batch([rgb], [class_index], settings, [overlay_label])[0]

    def run_batch(self, rgbs: Sequence[np.ndarray], class_indices: Sequence[int],
                  settings: OutputSettings,
                  overlay_labels: Optional[Sequence[Optional[str]]] = None) -> List[FrameOutputs]:
        """Run several frames (e.g. one per camera) as ONE inference; see :meth:`run`.

        Each frame is preprocessed into its row of the batch, the backend runs once, each row
        keeps its own action's map (``class_indices[i]``) and is post-processed at its own
        image size. Timings per frame: its own preprocess and postprocess, and the time of the
        whole batch's inference (what the frame waited for).

        Raises:
            ValueError: On an empty batch, mismatched lengths, a bad image or index.
        """
        count = len(rgbs)
        overlay_labels = [None] * count if overlay_labels is None else list(overlay_labels)
        if count == 0 or len(class_indices) != count or len(overlay_labels) != count:
            raise ValueError(f'run_batch needs as many class indices ({len(class_indices)}) '
                             f'and overlay labels ({len(overlay_labels)}) as images ({count}), '
                             'at least one')
        self.check_class_indices(class_indices)
        rows = self.infer_rows(rgbs, class_indices)
        results = []
        for row, (rgb, label) in enumerate(zip(rgbs, overlay_labels)):
            start = time.perf_counter()
            outputs = self.postprocess(rows.networks[row], rgb, settings, label)
            outputs.timings_s = {'preprocess': rows.preprocess_s[row],
                                 'inference': rows.inference_s,
                                 'postprocess': time.perf_counter() - start}
            results.append(outputs)
        return results

    def check_class_indices(self, class_indices: Sequence[int]) -> None:
        """Raise ``ValueError`` for an action index outside the model's labels."""
        for class_index in class_indices:
            if not 0 <= class_index < len(self.labels):
                raise ValueError(f'class index {class_index} is outside the '
                                 f'{len(self.labels)} labels of the model')

    def infer_rows(self, images: Sequence[np.ndarray],
                   class_indices: Sequence[int]) -> InferredRows:
        """Preprocess every image into its row of one batch and run the backend once.

        Args:
            images: (H, W, 3) uint8 RGB images (frames, or regions cut out of frames).
            class_indices: The action of each row.

        Returns:
            Each row's action map and every row's class activation maps, with timings.
        """
        count = len(images)
        batch = self._batch_buffer(count)
        preprocess_s = []
        for row, rgb in enumerate(images):
            start = time.perf_counter()
            self.preprocessor(rgb, out=batch[row:row + 1])  # (1, 3, S, S) view of the batch
            preprocess_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = self.backend.infer(batch)
        networks = result.affordance[np.arange(count), np.asarray(class_indices)]  # (B, S, S)
        return InferredRows(networks, result.cam, preprocess_s, time.perf_counter() - start)

    def _batch_buffer(self, count: int) -> torch.Tensor:
        """Return the reused (count, 3, S, S) input buffer of this batch size."""
        if count not in self._inputs:
            self._inputs[count] = torch.empty(count, 3, self.image_size, self.image_size)
        return self._inputs[count]

    def postprocess(self, network: np.ndarray, rgb: np.ndarray, settings: OutputSettings,
                    overlay_label: Optional[str]) -> FrameOutputs:
        """One frame's (S, S) map -> heatmap, grasp mask and overlay (timings left empty)."""
        full = None
        if settings.heatmap_resolution == 'input' or overlay_label is not None:
            full = resize_to_input(network, rgb.shape[:2])  # (H, W): the model's resize undone
        heatmap = full if settings.heatmap_resolution == 'input' else network
        return self._outputs(heatmap, full, rgb, settings, overlay_label)

    def postprocess_full(self, full: np.ndarray, rgb: np.ndarray, settings: OutputSettings,
                         overlay_label: Optional[str]) -> FrameOutputs:
        """Like :meth:`postprocess` for a map already at input resolution (pasted regions)."""
        heatmap = full
        if settings.heatmap_resolution == 'model':
            size = self.image_size
            heatmap = cv2.resize(full, (size, size), interpolation=cv2.INTER_AREA)  # (S, S)
        return self._outputs(heatmap, full, rgb, settings, overlay_label)

    @staticmethod
    def _outputs(heatmap: np.ndarray, full: Optional[np.ndarray], rgb: np.ndarray,
                 settings: OutputSettings, overlay_label: Optional[str]) -> FrameOutputs:
        mask = compute_grasp_mask(heatmap, settings.mask_threshold,
                                  settings.mask_largest_component)
        overlay = None
        if overlay_label is not None:
            overlay = render_overlay(rgb, full, overlay_label, settings.overlay_alpha,
                                     settings.colormap)
        return FrameOutputs(heatmap=np.ascontiguousarray(heatmap, dtype=np.float32), mask=mask,
                            overlay=overlay)
