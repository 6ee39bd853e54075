"""The interface every inference backend implements, and the settings they share.

Every backend takes a batch of preprocessed images, float32 (B, 3, S, S) normalised as the
model's metadata says, and returns a :class:`GroundingResult` with the tensors named in
:mod:`io_spec`. ``load`` does the expensive work once (a lifecycle node calls it on
configure); ``infer`` is cheap and repeatable. Optional libraries are imported in ``load``.
The backends themselves live in ``torch_backend``, ``onnxruntime_backend`` and
``tensorrt_backend``; ``inference.backends`` gathers them, ``inference.selection`` picks one
(order in docs/export.md).
"""

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

from affordance_grounding.inference.io_spec import ModelFileError, ModelMetadata
import numpy as np
import torch

ImageBatch = Union[np.ndarray, torch.Tensor]


@dataclass
class GroundingResult:
    """The outputs of one batch, identical in name, shape and dtype for every backend.

    Attributes:
        affordance: (B, K, S, S) float32 selected calibration map, upsampled, in [0, 1].
        cam: (B, K, G, G) float32 raw class activation maps.
        affinity: (B, K, G, G) float32 min-max CLIP affinity in [0, 1].
    """

    affordance: np.ndarray
    cam: np.ndarray
    affinity: np.ndarray


@dataclass(frozen=True)
class BackendOptions:
    """Settings shared by the backends; each reads the ones that apply to it.

    Attributes:
        calibration: PyTorch: the map returned as ``affordance`` (default ``clip``). ONNX and
            engines have it baked in: when set, it must match theirs.
        expected_labels: When set, the model's label list must equal it.
        precision: ``auto`` (PyTorch: fp16 autocast on CUDA, fp32 on the CPU; TensorRT: the
            ONNX's own typing), ``fp32`` or ``fp16``.
        use_cuda_graphs: PyTorch CUDA: capture one CUDA graph per batch size.
        pinned_outputs: PyTorch CUDA: copy the outputs into page-locked host memory (from
            torch's caching host allocator, reused once a result is dropped) instead of fresh
            pageable arrays; the all-class maps are 7 MB a frame.
        intra_op_threads: Intra-op threads; None lets the library choose (all cores). ONNX
            Runtime: per session. PyTorch on the CPU: ``torch.set_num_threads`` at load, which
            is process-wide. On a CPU shared with other busy processes one thread can be
            several times faster than all cores (docs/benchmarks.md).
        cpu_spin_wait: ONNX Runtime CPU: let idle pool threads spin after a run (lowest
            latency for back-to-back runs; a node turns it off so that the pre- and
            post-processing between two runs get the cores).
        engine_cache_dir: TensorRT: where engines built from an ONNX are cached (default: the
            ONNX file's folder).
        max_batch: TensorRT: largest batch of the optimisation profile.
    """

    calibration: Optional[str] = None
    expected_labels: Optional[Tuple[str, ...]] = None
    precision: str = 'auto'
    use_cuda_graphs: bool = True
    pinned_outputs: bool = True
    intra_op_threads: Optional[int] = None
    cpu_spin_wait: bool = True
    engine_cache_dir: Optional[str] = None
    max_batch: int = 8


class InferenceBackend(abc.ABC):
    """Common interface: ``load``, ``warm_up``, ``infer``; ``name``/``device``/``precision``."""

    name = 'backend'

    def __init__(self, model_path: Optional[str], device: str = 'cpu',
                 options: Optional[BackendOptions] = None):
        """Remember what to load; nothing heavy happens before :meth:`load`."""
        self.model_path = None if model_path is None else Path(model_path)
        self.options = options or BackendOptions()
        self._device = device
        self._metadata: Optional[ModelMetadata] = None

    @property
    def device(self) -> str:
        """Device the backend runs on (``cpu``, ``cuda:0`` ...)."""
        return self._device

    @property
    @abc.abstractmethod
    def precision(self) -> str:
        """``fp32`` or ``fp16``: the precision of the backbones as run."""

    @property
    def loaded(self) -> bool:
        """True after a successful :meth:`load`."""
        return self._metadata is not None

    @property
    def metadata(self) -> ModelMetadata:
        """Labels, calibration, input size and normalisation of the loaded model."""
        if self._metadata is None:
            raise RuntimeError(f'{self.name} backend: call load() first')
        return self._metadata

    def describe(self) -> str:
        """One line for logs: name, device and precision."""
        return f'{self.name} on {self.device} ({self.precision})'

    @abc.abstractmethod
    def load(self) -> 'InferenceBackend':
        """Load the model; returns self.

        Raises:
            ModelFileError: If the model file is missing, corrupt or for other labels.
            BackendUnavailableError: If a library, provider or device is missing.
        """

    def warm_up(self, batch_size: int = 1, iterations: int = 3) -> None:
        """Run a few zero batches (allocations, autotuning, CUDA graph capture)."""
        size = self.metadata.image_size
        images = np.zeros((batch_size, 3, size, size), dtype=np.float32)
        for _ in range(iterations):
            self.infer(images)

    def infer(self, images: ImageBatch) -> GroundingResult:
        """Run one batch.

        Args:
            images: (B, 3, S, S) float32 numpy array or torch tensor, normalised with
                ``metadata.mean/std`` (:class:`ImagePreprocessor`).

        Returns:
            The batch's outputs as float32 numpy arrays.

        Raises:
            RuntimeError: If :meth:`load` was not called.
            ValueError: If the batch has the wrong shape or dtype.
        """
        metadata = self.metadata
        check_image_batch(images, metadata.image_size)
        return self._run(images)

    @abc.abstractmethod
    def _run(self, images: ImageBatch) -> GroundingResult:
        """Run a validated batch."""

    def close(self) -> None:
        """Free the model (the backend can be loaded again)."""
        self._metadata = None


def check_image_batch(images: ImageBatch, image_size: int) -> None:
    """Raise ValueError unless ``images`` is a float32 (B, 3, S, S) batch with B >= 1."""
    shape = tuple(images.shape)
    dtype = images.dtype
    if (len(shape) != 4 or shape[0] < 1 or shape[1:] != (3, image_size, image_size)
            or dtype not in (np.float32, torch.float32)):
        raise ValueError(f'expected a float32 (B, 3, {image_size}, {image_size}) image batch, '
                         f'got shape {shape} dtype {dtype}; preprocess with ImagePreprocessor')


def check_calibration(metadata: ModelMetadata, requested: Optional[str], source: str) -> None:
    """Raise ModelFileError when a graph's baked-in calibration is not the requested one."""
    if requested is not None and requested != metadata.calibration:
        raise ModelFileError(
            f'{source} was exported with calibration {metadata.calibration!r} but '
            f'{requested!r} was requested; re-export with --calibration {requested} or drop '
            f'the calibration setting')
