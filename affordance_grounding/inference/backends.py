"""Every inference backend behind one interface: PyTorch, ONNX Runtime and TensorRT.

This module gathers the names callers use; each backend lives in its own module
(``torch_backend``, ``onnxruntime_backend``, ``tensorrt_backend``, the last one imported on
demand by ``inference.selection``), the shared interface in ``backend_interface``.
:func:`~affordance_grounding.inference.selection.select_backend` picks the fastest one that
runs here (order in docs/export.md) and logs why each faster one was skipped.
"""

from affordance_grounding.inference.backend_interface import (  # noqa: F401 - re-exported
    BackendOptions, check_calibration, check_image_batch, GroundingResult, ImageBatch,
    InferenceBackend)
from affordance_grounding.inference.onnxruntime_backend import (  # noqa: F401 - re-exported
    import_onnxruntime, INT8_OPS, INT8_PRECISION, is_int8_onnx, OnnxRuntimeBackend,
    QUANTIZATION_KEY)
from affordance_grounding.inference.torch_backend import TorchBackend  # noqa: F401

__all__ = ['BackendOptions', 'check_calibration', 'check_image_batch', 'GroundingResult',
           'ImageBatch', 'import_onnxruntime', 'INT8_OPS', 'INT8_PRECISION', 'InferenceBackend',
           'is_int8_onnx', 'OnnxRuntimeBackend', 'QUANTIZATION_KEY', 'TorchBackend']
