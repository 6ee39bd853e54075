"""Inference backends behind one interface: PyTorch, ONNX Runtime (TensorRT: tensorrt_backend).

Every backend takes a batch of preprocessed images, float32 (B, 3, S, S) normalised as the
model's metadata says, and returns a :class:`GroundingResult` with the tensors named in
:mod:`io_spec`. ``load`` does the expensive work once (a lifecycle node calls it on
activation); ``infer`` is cheap and repeatable. Optional libraries are imported in ``load``.
:func:`select_backend` picks the fastest available one (EXPORT.md order) and logs why each
faster one was skipped.
"""

import abc
from dataclasses import dataclass
import logging
from pathlib import Path
import threading
from typing import Dict, Optional, Tuple, Union

from affordance_grounding.model.checkpoint import load_grounder
from affordance_grounding.runtime.graph import GroundingGraph
from affordance_grounding.runtime.io_spec import (
    BackendUnavailableError, compute_file_sha256, INPUT_NAME, ModelFileError, ModelMetadata,
    OUTPUT_NAMES, require_file)
import numpy as np
import torch

LOGGER = logging.getLogger(__name__)
EXPORT_FIX = 'export it with `python -m training.export --checkpoint BUNDLE --out MODEL.onnx`'
INT8_PRECISION = 'int8'  # an ONNX graph quantized for ONNX Runtime on the CPU (training.quantize)
QUANTIZATION_KEY = 'quantization'  # metadata key: how the int8 graph was made
INT8_OPS = frozenset({'QuantizeLinear', 'DynamicQuantizeLinear', 'MatMulInteger',
                      'QLinearMatMul', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat'})

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
            ModelFileError: If the model file is missing, corrupt or for other labels
                (``CheckpointError`` for bundles).
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


@dataclass
class _CapturedGraph:
    """One CUDA graph with its static input and output buffers."""

    graph: 'torch.cuda.CUDAGraph'
    image: torch.Tensor  # (B, 3, S, S) float32, on the GPU
    outputs: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TorchBackend(InferenceBackend):
    """PyTorch from a checkpoint bundle: CPU eager, or CUDA with fp16 autocast + CUDA graphs.

    On CUDA the backbones run under fp16 autocast and everything after them in float32; one
    CUDA graph per batch size is captured on first use, with pre-allocated static buffers.
    """

    name = 'torch'

    def __init__(self, model_path: Optional[str], device: str = 'cpu',
                 options: Optional[BackendOptions] = None, grounder=None):
        """Create the backend from a bundle path, or from an in-memory ``grounder``.

        A given grounder is used as it is (not copied): :meth:`load` moves it to the device.
        """
        super().__init__(model_path, device, options)
        if model_path is None and grounder is None:
            raise ValueError('TorchBackend needs a bundle path or a grounder')
        self._grounder = grounder
        self._graph: Optional[GroundingGraph] = None
        self._precision = 'fp32'
        self._captured: Dict[int, _CapturedGraph] = {}
        self._lock = threading.Lock()

    @property
    def precision(self) -> str:
        """Backbone precision: ``fp16`` (autocast) or ``fp32``."""
        return self._precision

    def load(self) -> 'TorchBackend':
        """Load the bundle (or take the given grounder) onto the device."""
        device = torch.device(self._device)
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise BackendUnavailableError('PyTorch sees no CUDA device '
                                          '(torch.cuda.is_available() is False)')
        precision = self.options.precision
        if precision == 'auto':
            precision = 'fp16' if device.type == 'cuda' else 'fp32'
        if precision == 'fp16' and device.type != 'cuda':
            raise ValueError('fp16 autocast needs a CUDA device; use precision fp32 on the CPU')
        source_sha256 = ''
        grounder = self._grounder
        if grounder is None:
            require_file(str(self.model_path), 'checkpoint bundle',
                         'train one or convert a released checkpoint')
            grounder = load_grounder(str(self.model_path), 'cpu', self.options.expected_labels)
            source_sha256 = compute_file_sha256(str(self.model_path))
        graph = GroundingGraph(grounder, self.options.calibration or 'clip', 'fp32')
        if device.type == 'cpu' and self.options.intra_op_threads:
            torch.set_num_threads(self.options.intra_op_threads)
        self._graph = graph.to(device).eval()
        self._precision = precision
        self._captured = {}
        self._device = str(device) if device.type == 'cpu' else f'cuda:{_cuda_index(device)}'
        self._metadata = graph.metadata(source_sha256)
        self._metadata.check_labels(self.options.expected_labels, str(self.model_path))
        return self

    def close(self) -> None:
        """Drop the model, the CUDA graphs and their buffers."""
        super().close()
        self._graph = None
        self._captured = {}

    def _forward(self, image: torch.Tensor):
        """Backbones (fp16 autocast on CUDA when asked), then float32 head and calibration."""
        graph = self._graph
        fp16 = self._precision == 'fp16'
        with torch.autocast('cuda', dtype=torch.float16, enabled=fp16, cache_enabled=False):
            features = graph.compute_features(image)
        return graph.compute_outputs(features)

    @torch.inference_mode()
    def _run(self, images: ImageBatch) -> GroundingResult:
        """Eager on the CPU; replay of a captured graph on CUDA."""
        return self._execute(images, lambda outputs, _: GroundingResult(
            *self._to_host(outputs)))

    def _to_host(self, outputs) -> Tuple[np.ndarray, ...]:
        """Copy output tensors to host numpy arrays (pinned staging on CUDA when asked)."""
        if not (self._device.startswith('cuda') and self.options.pinned_outputs):
            return tuple(output.cpu().numpy() for output in outputs)
        hosts = [torch.empty(output.shape, dtype=output.dtype, pin_memory=True)
                 for output in outputs]
        for host, output in zip(hosts, outputs):
            host.copy_(output, non_blocking=True)  # on the stream that computed the outputs
        torch.cuda.current_stream(outputs[0].device).synchronize()
        return tuple(host.numpy() for host in hosts)

    @torch.inference_mode()
    def infer_on_device(self, images: ImageBatch
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run one batch and leave ``(affordance, cam, affinity)`` on the backend's device.

        For callers that keep working on the GPU or copy only part of the maps to the host
        (the all-class ``affordance`` of a batch of 64 is 460 MB). Same shapes and dtypes as
        :meth:`infer`; the tensors belong to the caller (copies of a CUDA graph's buffers).

        Raises:
            RuntimeError: If :meth:`load` was not called.
            ValueError: If the batch has the wrong shape or dtype.
        """
        check_image_batch(images, self.metadata.image_size)
        return self._execute(images, lambda outputs, static: tuple(
            output.clone() if static else output for output in outputs))

    def _execute(self, images: ImageBatch, finish):
        """Run a batch; ``finish(outputs, static)`` turns the output tensors into the result.

        ``static`` is True for a CUDA graph's shared buffers, which ``finish`` must copy: it
        runs under the lock, before the next replay can overwrite them.
        """
        batch = torch.as_tensor(images)
        use_graphs = self._device.startswith('cuda') and self.options.use_cuda_graphs
        if not use_graphs:
            return finish(self._forward(batch.to(self._device, non_blocking=True)), False)
        with self._lock:  # the static buffers are shared: one replay at a time
            captured = self._captured.get(batch.shape[0])
            if captured is None:
                captured = self._captured[batch.shape[0]] = self._capture(batch.shape[0])
            captured.image.copy_(batch, non_blocking=True)
            captured.graph.replay()
            return finish(captured.outputs, True)

    def _capture(self, batch_size: int) -> _CapturedGraph:
        """Warm up on a side stream, then capture the forward pass for one batch size."""
        size = self.metadata.image_size
        device = torch.device(self._device)
        image = torch.zeros(batch_size, 3, size, size, device=device)  # static input
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(3):  # cuBLAS/cuDNN handles and autotuning happen outside capture
                self._forward(image)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self._forward(image)
        LOGGER.info('captured a CUDA graph for batch %d on %s', batch_size, self._device)
        return _CapturedGraph(graph=graph, image=image, outputs=outputs)


def _cuda_index(device: torch.device) -> int:
    """Return the CUDA device index (the current device when none is given)."""
    return torch.cuda.current_device() if device.index is None else device.index


def import_onnxruntime():
    """Import onnxruntime, or raise BackendUnavailableError with the install command."""
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendUnavailableError(
            'onnxruntime is not installed: pip install onnxruntime (CPU) or onnxruntime-gpu '
            '(CUDA)') from error
    return onnxruntime


def is_int8_onnx(model) -> bool:
    """Tell an int8 graph: ``precision: int8`` in its metadata, or quantization operators."""
    props = {entry.key: entry.value for entry in model.metadata_props}
    if props.get('precision') == INT8_PRECISION:
        return True
    return any(node.op_type in INT8_OPS for node in model.graph.node)


class OnnxRuntimeBackend(InferenceBackend):
    """ONNX Runtime on the CPU or the CUDA execution provider, tuned for latency."""

    name = 'onnxruntime'

    def __init__(self, model_path: str, device: str = 'cpu',
                 options: Optional[BackendOptions] = None):
        """Create the backend for an exported ``.onnx`` file."""
        super().__init__(model_path, device, options)
        self._session = None
        self._quantization: Optional[str] = None

    @property
    def precision(self) -> str:
        """The precision the graph was exported in (``int8`` for a quantized graph)."""
        return self._metadata.precision if self._metadata else 'fp32'

    def describe(self) -> str:
        """One line for logs; an int8 graph also names how it was quantized."""
        if self._metadata is None or self.precision != INT8_PRECISION:
            return super().describe()
        return (f'{self.name} on {self.device} (int8: {self._quantization or "quantized"} '
                f'MatMul/Gemm, the rest fp32)')

    def load(self) -> 'OnnxRuntimeBackend':
        """Create the inference session and read the metadata."""
        ort = import_onnxruntime()
        path = require_file(str(self.model_path), 'ONNX model', EXPORT_FIX)
        providers = self._providers(ort)
        try:
            session = ort.InferenceSession(str(path), self._session_options(ort),
                                           providers=providers)
        except Exception as error:  # InvalidProtobuf, Fail, InvalidGraph ...
            raise ModelFileError(
                f'ONNX Runtime cannot load {path} ({type(error).__name__}: '
                f'{str(error).splitlines()[0][:300]}); the file is truncated, corrupt or not '
                f'ONNX: {EXPORT_FIX}') from error
        metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map,
                                            str(path))
        metadata.check_labels(self.options.expected_labels, str(path))
        check_calibration(metadata, self.options.calibration, str(path))
        names = ([value.name for value in session.get_inputs()],
                 [value.name for value in session.get_outputs()])
        if names != ([INPUT_NAME], list(OUTPUT_NAMES)):
            raise ModelFileError(f'{path}: tensors {names[0]} -> {names[1]}, expected '
                                 f'[{INPUT_NAME!r}] -> {list(OUTPUT_NAMES)}; {EXPORT_FIX}')
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if wanted not in session.get_providers():
            raise BackendUnavailableError(f'ONNX Runtime could not start {wanted} '
                                          f'(it fell back to {session.get_providers()})')
        self._quantization = session.get_modelmeta().custom_metadata_map.get(QUANTIZATION_KEY)
        self._session, self._metadata = session, metadata
        return self

    def close(self) -> None:
        """Drop the session."""
        super().close()
        self._session = None

    def _providers(self, ort):
        """Return the execution providers for the device; CUDA must really be there."""
        if not self._device.startswith('cuda'):
            return ['CPUExecutionProvider']
        if 'CUDAExecutionProvider' not in ort.get_available_providers():
            raise BackendUnavailableError(
                'onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu matching '
                'your CUDA version)')
        index = int(self._device.split(':')[1]) if ':' in self._device else 0
        self._device = f'cuda:{index}'
        return [('CUDAExecutionProvider', {'device_id': index}), 'CPUExecutionProvider']

    def _session_options(self, ort):
        """Latency-oriented session options: all graph optimisations, one request at a time."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.options.intra_op_threads or 0
        if not self.options.cpu_spin_wait:
            options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = True
        options.log_severity_level = 3  # errors only; our own log says what was loaded
        return options

    def _run(self, images: ImageBatch) -> GroundingResult:
        """Run the session (thread-safe in ONNX Runtime)."""
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        feed = {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)}
        affordance, cam, affinity = self._session.run(list(OUTPUT_NAMES), feed)
        return GroundingResult(affordance=affordance, cam=cam, affinity=affinity)
