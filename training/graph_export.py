"""Export the grounding graph to one ONNX file, checked against PyTorch before it is kept.

The graph is the whole inference model (backbones, head, calibration, prompt table baked in):
``image`` (B, 3, 224, 224) -> ``affordance``, ``cam``, ``affinity`` (names in
``affordance_grounding.inference.io_spec``), dynamic batch, opset 20, weights inside the file,
labels/calibration/size/normalisation/bundle hash in ``metadata_props``. Every export is
checked (ONNX checker, interface, TensorRT constraints) and compared with PyTorch at batch 1
and 2; past tolerance (training/parity.py) the export fails with the per-output errors and
writes nothing. ``fp16`` writes an FP16-typed graph (float16 backbones, float32 head and
normalisation) for strongly typed TensorRT builds, checked by per-map cosine. The exporter is
dynamo; when it fails, the TorchScript exporter runs instead and the report says why.
"""

from dataclasses import dataclass, field
import logging
from pathlib import Path
import time
from typing import Dict, Optional, Tuple

from affordance_grounding.fileio import atomic_write
from affordance_grounding.inference.graph import build_grounding_graph, GroundingGraph
from affordance_grounding.inference.io_spec import (
    BATCH_DIM_NAME, INPUT_NAME, ONNX_OPSET, OUTPUT_NAMES)
from affordance_grounding.inference.onnx_model import (
    find_interface_problems, find_tensorrt_problems, write_onnx_metadata)
from affordance_grounding.model.grounding import AffordanceGrounder
import numpy as np
import torch
from training.parity import (
    compute_min_map_cosine, ExportError, find_parity_failures, FP16_MIN_COSINE, FP32_ATOL)

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOptions:
    """Export settings.

    Attributes:
        calibration: Map exported as ``affordance``.
        opset: ONNX opset (<= 20 for TensorRT 10.3, see docs/export.md).
        precision: ``fp32`` or ``fp16`` (FP16-typed backbones).
        atol: fp32 parity tolerance, max abs error on every output.
        min_cosine: fp16 parity bound, smallest per-map cosine of ``cam`` and ``affinity``.
        parity_batches: Batch sizes compared with PyTorch.
        check_tensorrt: Fail when the graph breaks a TensorRT 10.3 constraint.
        seed: Seed of the random parity images.
    """

    calibration: str = 'clip'
    opset: int = ONNX_OPSET
    precision: str = 'fp32'
    atol: float = FP32_ATOL
    min_cosine: float = FP16_MIN_COSINE
    parity_batches: Tuple[int, ...] = (1, 2)
    check_tensorrt: bool = True
    seed: int = 0


@dataclass
class ExportReport:
    """What an export produced and measured.

    Attributes:
        path: The ONNX file.
        exporter: ``dynamo`` or ``torchscript`` (fallback).
        fallback_reason: Why the dynamo exporter was not used, or None.
        max_abs_error: {batch: {output: max |onnx - torch|}}.
        min_cosine: {batch: {output: smallest per-map cosine}}.
        seconds: Export and check time.
    """

    path: Path
    exporter: str
    fallback_reason: Optional[str] = None
    max_abs_error: Dict[int, Dict[str, float]] = field(default_factory=dict)
    min_cosine: Dict[int, Dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


def run_onnx_exporter(graph: GroundingGraph, path: Path, opset: int) -> Tuple[str, Optional[str]]:
    """Write ``graph`` to ``path`` with the dynamo exporter, or TorchScript if dynamo fails.

    Returns:
        ``(exporter name, fallback reason or None)``.
    """
    size = graph.image_size
    example = torch.randn(2, 3, size, size)  # batch 2: no 0/1 specialisation of the batch dim
    names = {'input_names': [INPUT_NAME], 'output_names': list(OUTPUT_NAMES)}
    try:
        batch = torch.export.Dim(BATCH_DIM_NAME, min=1, max=1024)
        torch.onnx.export(graph, (example,), str(path), dynamo=True, opset_version=opset,
                          external_data=False, dynamic_shapes=({0: batch},), verbose=False,
                          **names)
        return 'dynamo', None
    except Exception as error:  # any exporter failure: record it and try the other exporter
        reason = f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}'
        LOGGER.warning('dynamo ONNX export failed (%s); falling back to the TorchScript '
                       'exporter with the MHA fast path disabled', reason)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # open_clip's attention, docs/export.md
    try:
        axes = {name: {0: BATCH_DIM_NAME} for name in (INPUT_NAME,) + OUTPUT_NAMES}
        torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=opset,
                          dynamic_axes=axes, **names)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return 'torchscript', reason


def set_static_output_dims(model, metadata) -> None:
    """Write the constant output dims that the TorchScript exporter leaves symbolic.

    (K, S, S) for ``affordance``, (K, G, G) for ``cam``/``affinity``: TensorRT wants a fixed
    output size; the ONNX Runtime parity check then verifies the real shapes.
    """
    classes, size, grid = len(metadata.labels), metadata.image_size, metadata.grid_size
    static = {OUTPUT_NAMES[0]: (classes, size, size), OUTPUT_NAMES[1]: (classes, grid, grid),
              OUTPUT_NAMES[2]: (classes, grid, grid)}
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        for dim, extent in zip(dims[1:], static.get(value.name, ())):
            dim.dim_value = extent  # replaces a dim_param (oneof field)


def finalize_onnx(path: Path, graph: GroundingGraph, options: ExportOptions,
                  source_sha256: str, exporter: str) -> None:
    """Add the metadata, run the ONNX checker and our interface/TensorRT checks, save in place.

    Raises:
        ExportError: If a check fails.
    """
    import onnx

    model = onnx.load(str(path))
    metadata = graph.metadata(source_sha256)
    write_onnx_metadata(model, metadata)
    if exporter == 'torchscript':
        set_static_output_dims(model, metadata)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f'ONNX checker rejected the export: {error}') from error
    problems = find_interface_problems(model, metadata)
    if options.check_tensorrt:
        problems += find_tensorrt_problems(model)
    if problems:
        raise ExportError(f'exported graph fails checks: {"; ".join(problems)}')
    onnx.save_model(model, str(path), save_as_external_data=False)


def compare_with_torch(reference: GroundingGraph, path: Path,
                       options: ExportOptions) -> Tuple[Dict, Dict]:
    """Run ONNX Runtime (CPU) and the fp32 PyTorch graph on random batches.

    Returns:
        ``(max_abs_error, min_cosine)``, each {batch: {output: value}}.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    generator = torch.Generator().manual_seed(options.seed)
    size = reference.image_size
    max_abs, min_cos = {}, {}
    for batch in options.parity_batches:
        image = torch.randn(batch, 3, size, size, generator=generator)
        with torch.inference_mode():
            expected = [tensor.numpy() for tensor in reference(image)]
        actual = session.run(list(OUTPUT_NAMES), {INPUT_NAME: image.numpy()})
        for name, got, want in zip(OUTPUT_NAMES, actual, expected):
            if got.shape != want.shape or got.dtype != np.float32:
                raise ExportError(f'ONNX output {name} is {got.dtype} {got.shape}, PyTorch '
                                  f'gives float32 {want.shape}')
        max_abs[batch] = {name: float(np.abs(a - e).max())
                          for name, a, e in zip(OUTPUT_NAMES, actual, expected)}
        min_cos[batch] = {name: compute_min_map_cosine(a, e)
                          for name, a, e in zip(OUTPUT_NAMES, actual, expected)}
    return max_abs, min_cos


def export_onnx(grounder: AffordanceGrounder, out_path: str,
                options: ExportOptions = ExportOptions(), source_sha256: str = '') -> ExportReport:
    """Export, check and compare; the file appears at ``out_path`` only if every check passes.

    Args:
        grounder: Eval-mode network on the CPU (not modified).
        out_path: Destination ``.onnx``.
        options: Export settings.
        source_sha256: Hash of the bundle the grounder came from (stored in the metadata).

    Raises:
        ExportError: If a graph check or the parity check fails (with the errors measured).
    """
    started = time.perf_counter()
    destination = Path(out_path)
    graph = build_grounding_graph(grounder, options.calibration, options.precision)
    reference = build_grounding_graph(grounder, options.calibration, 'fp32')
    report = ExportReport(path=destination, exporter='', fallback_reason=None)

    def write_checked(temporary: Path) -> None:
        report.exporter, report.fallback_reason = run_onnx_exporter(graph, temporary,
                                                                    options.opset)
        finalize_onnx(temporary, graph, options, source_sha256, report.exporter)
        report.max_abs_error, report.min_cosine = compare_with_torch(reference, temporary,
                                                                     options)
        failures = find_parity_failures(report.max_abs_error, report.min_cosine,
                                        options.precision, options.atol, options.min_cosine)
        if failures:
            raise ExportError('ONNX Runtime output differs from PyTorch: ' + '; '.join(failures))

    atomic_write(destination, write_checked)
    report.seconds = time.perf_counter() - started
    return report


def format_report(report: ExportReport, kept: bool = True) -> str:
    """Return a few lines describing the export and its parity numbers.

    Args:
        report: What :func:`export_onnx` measured.
        kept: False for the int8 path's fp32 intermediate, which is removed after quantizing:
            the first line then does not claim a file was written.
    """
    size = f'{report.path.stat().st_size / 2**20:.1f} MiB, ' if report.path.exists() else ''
    head = f'wrote {report.path}' if kept else 'fp32 source (temporary, removed after quantizing)'
    lines = [f'{head} ({size}{report.exporter} exporter, {report.seconds:.1f} s)']
    if report.fallback_reason:
        lines.append(f'  dynamo export failed: {report.fallback_reason}')
    for batch, errors in report.max_abs_error.items():
        cosines = report.min_cosine[batch]
        lines.append(f'  batch {batch}: ' + ', '.join(
            f'{name} max abs {errors[name]:.2e} (min cos {cosines[name]:.6f})'
            for name in OUTPUT_NAMES))
    return '\n'.join(lines)
