"""The rows bench.inference times: which backend configurations, which can run, how to load.

What can run and how a backend is constructed come from ``inference.selection`` (the same
probe, skip reasons and constructors as a node's ``backend: auto``); PyTorch rows take the
in-memory grounder instead of a bundle file.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from affordance_grounding.inference.backends import (
    BackendOptions, InferenceBackend, INT8_PRECISION, TorchBackend)
from affordance_grounding.inference.selection import (
    create_backend, Environment, find_skip_reasons)

REFERENCE = 'reference'
# The model file each backend reads; PyTorch rows use the grounder (a bundle's equivalent).
FILE_KIND = {'torch': 'bundle', 'onnxruntime': 'onnx', 'tensorrt': 'onnx'}


@dataclass(frozen=True)
class RowSpec:
    """One backend configuration to time.

    Attributes:
        label: Name in the table.
        backend: ``torch``, ``onnxruntime``, ``tensorrt`` or ``reference``.
        device: ``cpu`` or ``cuda``.
        precision: ``fp32``, ``fp16`` or ``int8``.
        cuda_graphs: PyTorch CUDA: replay captured graphs.
        pinned_outputs: PyTorch CUDA: page-locked host copies of the outputs.
        int8_method: int8 rows: ``dynamic`` or ``static`` (training/quantize.py).
    """

    label: str
    backend: str
    device: str
    precision: str = 'fp32'
    cuda_graphs: bool = False
    pinned_outputs: bool = True
    int8_method: Optional[str] = None

    @property
    def onnx_key(self) -> str:
        """Key of the ONNX file the row reads: ``fp32``, ``fp16``, ``int8_dynamic`` ..."""
        if self.backend == 'tensorrt':
            return 'fp16'
        return self.precision + (f'_{self.int8_method}' if self.int8_method else '')


CPU_ROWS = (
    RowSpec('torch eager fp32', 'torch', 'cpu'),
    RowSpec('onnxruntime cpu fp32', 'onnxruntime', 'cpu'),
    RowSpec('onnxruntime cpu int8 dynamic', 'onnxruntime', 'cpu', INT8_PRECISION,
            int8_method='dynamic'),
    RowSpec('onnxruntime cpu int8 static', 'onnxruntime', 'cpu', INT8_PRECISION,
            int8_method='static'),
)
CUDA_ROWS = (
    RowSpec('torch cuda fp32', 'torch', 'cuda'),
    RowSpec('torch cuda fp32 + graphs', 'torch', 'cuda', cuda_graphs=True),
    RowSpec('torch cuda fp16', 'torch', 'cuda', 'fp16'),
    RowSpec('torch cuda fp16 + graphs', 'torch', 'cuda', 'fp16', cuda_graphs=True),
    RowSpec('torch cuda fp16 + graphs, pageable copies', 'torch', 'cuda', 'fp16',
            cuda_graphs=True, pinned_outputs=False),
    RowSpec('onnxruntime cuda fp32', 'onnxruntime', 'cuda'),
    RowSpec('tensorrt fp16', 'tensorrt', 'cuda', 'fp16'),
)


def skip_reason(spec: RowSpec, environment: Environment) -> Optional[str]:
    """Why ``spec`` cannot run on this machine (``inference.selection``'s reasons), or None."""
    reasons = find_skip_reasons(spec.backend, spec.device, FILE_KIND[spec.backend], environment)
    if spec.device == 'cuda' and not environment.cuda_available and not reasons:
        reasons = ['no CUDA device (torch.cuda.is_available() is False)']
    return '; '.join(reasons) or None


def plan_rows(specs: Sequence[RowSpec], environment: Environment, cpu: bool = True,
              int8_methods: Sequence[str] = ('dynamic',)) -> Tuple[List[RowSpec], List[dict]]:
    """Split ``specs`` into (rows to time, skipped rows with their reason)."""
    planned, skipped = [], []
    for spec in specs:
        reason = skip_reason(spec, environment)
        if spec.device == 'cpu' and not cpu:
            reason = 'CPU rows not asked for (--no-cpu)'
        elif spec.int8_method and spec.int8_method not in int8_methods:
            reason = f'int8 method {spec.int8_method} not asked for (--int8-methods)'
        if reason:
            skipped.append({'backend': spec.label, 'device': spec.device, 'reason': reason})
        else:
            planned.append(spec)
    return planned, skipped


def needed_onnx_files(planned: Sequence[RowSpec]) -> List[RowSpec]:
    """Return one row per ONNX file the rows read (fp32, int8 per method, fp16 for TensorRT)."""
    files: Dict[str, RowSpec] = {}
    for spec in planned:
        if spec.backend in ('onnxruntime', 'tensorrt'):
            files.setdefault(spec.onnx_key, spec)
    return sorted(files.values(), key=lambda spec: spec.onnx_key)


def create_row_backend(spec: RowSpec, grounder, onnx_paths: Dict[str, Path],
                       threads: Optional[int]) -> InferenceBackend:
    """Construct and load the backend of one row."""
    options = BackendOptions(precision=spec.precision, use_cuda_graphs=spec.cuda_graphs,
                             pinned_outputs=spec.pinned_outputs, intra_op_threads=threads)
    if spec.backend == 'torch':
        return TorchBackend(None, spec.device, options, grounder=grounder).load()
    if spec.backend == 'tensorrt':
        options = BackendOptions(precision=spec.precision, max_batch=64)
        return create_backend('tensorrt', str(onnx_paths['fp16']), spec.device, options).load()
    options = BackendOptions(intra_op_threads=threads)  # precision: the file's own
    return create_backend('onnxruntime', str(onnx_paths[spec.onnx_key]), spec.device,
                          options).load()
