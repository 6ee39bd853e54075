"""The ONNX Runtime backend: an exported ``.onnx`` on the CPU or CUDA execution provider."""

from typing import Optional

from affordance_grounding.inference.backend_interface import (
    BackendOptions, check_calibration, GroundingResult, ImageBatch, InferenceBackend)
from affordance_grounding.inference.io_spec import (
    BackendUnavailableError, INPUT_NAME, MISSING_ONNX_HINT, ModelFileError, ModelMetadata,
    OUTPUT_NAMES, REEXPORT_HINT, require_file)
import numpy as np
import torch

INT8_PRECISION = 'int8'  # an ONNX graph quantized for ONNX Runtime on the CPU (training.quantize)
QUANTIZATION_KEY = 'quantization'  # metadata key: how the int8 graph was made
INT8_OPS = frozenset({'QuantizeLinear', 'DynamicQuantizeLinear', 'MatMulInteger',
                      'QLinearMatMul', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat'})


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
        path = require_file(str(self.model_path), 'ONNX model', MISSING_ONNX_HINT)
        providers = self._providers(ort)
        try:
            session = ort.InferenceSession(str(path), self._session_options(ort),
                                           providers=providers)
        except Exception as error:  # InvalidProtobuf, Fail, InvalidGraph ...
            raise ModelFileError(
                f'ONNX Runtime cannot load {path} ({type(error).__name__}: '
                f'{str(error).splitlines()[0][:300]}); the file is truncated, corrupt or not '
                f'ONNX: {REEXPORT_HINT}') from error
        metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map,
                                            str(path))
        metadata.check_labels(self.options.expected_labels, str(path))
        check_calibration(metadata, self.options.calibration, str(path))
        names = ([value.name for value in session.get_inputs()],
                 [value.name for value in session.get_outputs()])
        if names != ([INPUT_NAME], list(OUTPUT_NAMES)):
            raise ModelFileError(f'{path}: tensors {names[0]} -> {names[1]}, expected '
                                 f'[{INPUT_NAME!r}] -> {list(OUTPUT_NAMES)}; {REEXPORT_HINT}')
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
