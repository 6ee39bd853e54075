"""TensorRT backend: a deserialised engine run with ``execute_async_v3`` on torch CUDA buffers.

Written against the TensorRT 10/11 Python API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``); no PyCUDA. An execution context is not thread-safe, so each thread
gets its own context, stream and buffers, created in that thread on first use. Given an ONNX
file, the engine is built or reused from the cache (:func:`engine_build.ensure_engine`);
given an engine, it must match this TensorRT and GPU (else a clear error says to rebuild).
"""

from dataclasses import dataclass, field
import logging
from pathlib import Path
import threading
from typing import Dict, Optional, Tuple

from affordance_grounding.inference.backend_interface import (
    BackendOptions, check_calibration, GroundingResult, ImageBatch, InferenceBackend)
from affordance_grounding.inference.engine_build import (
    EngineBuildOptions, ensure_engine, import_tensorrt, probe_target)
from affordance_grounding.inference.engine_cache import (
    check_engine_runs_here, engine_metadata_path, read_engine_metadata, REBUILD_FIX)
from affordance_grounding.inference.io_spec import (
    BackendUnavailableError, classify_model_file, INPUT_NAME, ModelFileError, OUTPUT_NAMES,
    require_file)
import torch

LOGGER = logging.getLogger(__name__)


@dataclass
class _ThreadState:
    """What one thread owns: its execution context, stream and per-batch buffers."""

    context: object
    stream: 'torch.cuda.Stream'
    buffers: Dict[int, Tuple[torch.Tensor, Dict[str, torch.Tensor]]] = field(
        default_factory=dict)


class TensorRTBackend(InferenceBackend):
    """Run a TensorRT engine built from our ONNX graph (float32 I/O, dynamic batch)."""

    name = 'tensorrt'

    def __init__(self, model_path: str, device: str = 'cuda',
                 options: Optional[BackendOptions] = None):
        """Create the backend for an ``.onnx`` (built/cached on load) or an ``.engine``."""
        super().__init__(model_path, device, options)
        self._engine = None
        self._runtime = None
        self._engine_precision = 'fp32'
        self._max_batch = 0
        self._local = threading.local()

    @property
    def precision(self) -> str:
        """Precision the engine was built in."""
        return self._engine_precision

    def load(self) -> 'TensorRTBackend':
        """Build or check the engine, then deserialise it on the device."""
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise BackendUnavailableError('TensorRT needs a CUDA device; torch sees none')
        device = torch.device(self._device if self._device.startswith('cuda') else 'cuda')
        index = torch.cuda.current_device() if device.index is None else device.index
        engine_path = self._resolve_engine(index)
        metadata = read_engine_metadata(str(engine_metadata_path(engine_path)))
        version, capability, _ = probe_target(index)
        check_engine_runs_here(metadata, str(engine_path), version, capability)
        metadata.model.check_labels(self.options.expected_labels, str(engine_path))
        check_calibration(metadata.model, self.options.calibration, str(engine_path))
        logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(index):
            runtime = trt.Runtime(logger)
            engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise ModelFileError(f'TensorRT cannot deserialise {engine_path} (corrupt, or built '
                                 f'by another TensorRT); {REBUILD_FIX}')
        self._check_io(trt, engine, engine_path)
        self._max_batch = engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0]
        self._runtime, self._engine = runtime, engine
        self._engine_precision = metadata.key.precision
        self._device = f'cuda:{index}'
        self._local = threading.local()
        self._metadata = metadata.model
        LOGGER.info('loaded TensorRT engine %s (%s, batch <= %d)', engine_path,
                    self._engine_precision, self._max_batch)
        return self

    def close(self) -> None:
        """Drop the engine; contexts die with their threads' state."""
        super().close()
        self._engine = None
        self._runtime = None
        self._local = threading.local()

    def _resolve_engine(self, device_index: int) -> Path:
        """Return the engine file: build/reuse from an ONNX, or the given engine."""
        path = str(self.model_path)
        if classify_model_file(path) == 'onnx':
            build = EngineBuildOptions(precision=self.options.precision,
                                       max_batch=self.options.max_batch)
            return ensure_engine(path, cache_dir=self.options.engine_cache_dir, options=build,
                                 device_index=device_index)
        return require_file(path, 'TensorRT engine', REBUILD_FIX)

    @staticmethod
    def _check_io(trt, engine, engine_path: Path) -> None:
        """Check that the engine has exactly our tensors, all float32."""
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        if sorted(names) != sorted((INPUT_NAME,) + OUTPUT_NAMES):
            raise ModelFileError(f'{engine_path} has tensors {names}, expected {INPUT_NAME} and '
                                 f'{list(OUTPUT_NAMES)}; {REBUILD_FIX}')
        for name in names:
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise ModelFileError(f'{engine_path}: tensor {name} is '
                                     f'{engine.get_tensor_dtype(name)}, expected FLOAT')

    def _thread_state(self) -> _ThreadState:
        """Return this thread's context and stream, created here on first use."""
        state = getattr(self._local, 'state', None)
        if state is None:
            with torch.cuda.device(self._device):
                context = self._engine.create_execution_context()
                state = _ThreadState(context=context, stream=torch.cuda.Stream(self._device))
            self._local.state = state
        return state

    def _buffers(self, state: _ThreadState, batch_size: int):
        """Pre-allocated input/output tensors for one batch size, bound to the context."""
        if batch_size not in state.buffers:
            size = self.metadata.image_size
            image = torch.empty(batch_size, 3, size, size, device=self._device)
            state.context.set_input_shape(INPUT_NAME, tuple(image.shape))
            outputs = {name: torch.empty(tuple(state.context.get_tensor_shape(name)),
                                         dtype=torch.float32, device=self._device)
                       for name in OUTPUT_NAMES}
            state.buffers[batch_size] = (image, outputs)
        image, outputs = state.buffers[batch_size]
        state.context.set_input_shape(INPUT_NAME, tuple(image.shape))
        state.context.set_tensor_address(INPUT_NAME, image.data_ptr())
        for name, tensor in outputs.items():
            state.context.set_tensor_address(name, tensor.data_ptr())
        return image, outputs

    def _run(self, images: ImageBatch) -> GroundingResult:
        """Copy in, enqueue on this thread's stream, wait, copy out."""
        batch = torch.as_tensor(images)
        if batch.shape[0] > self._max_batch:
            raise ValueError(f'batch {batch.shape[0]} exceeds the engine profile maximum '
                             f'{self._max_batch}; rebuild with a larger --max-batch')
        state = self._thread_state()
        state.stream.wait_stream(torch.cuda.current_stream(self._device))  # input producers
        with torch.cuda.stream(state.stream):
            image, outputs = self._buffers(state, batch.shape[0])
            image.copy_(batch, non_blocking=True)
            if not state.context.execute_async_v3(state.stream.cuda_stream):
                raise RuntimeError('TensorRT execute_async_v3 failed; see the TensorRT log')
        state.stream.synchronize()
        return GroundingResult(*(outputs[name].cpu().numpy() for name in OUTPUT_NAMES))
