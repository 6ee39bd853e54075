r"""Export a model bundle to one ONNX graph and check it against PyTorch with ONNX Runtime.

    python -m training.export --checkpoint outputs/train/best.pt --out model.onnx \
        [--calibration clip] [--opset 20] [--precision fp32|fp16|int8] \
        [--tensorrt-engine model.engine] [--text-tower]
    python -m training.export --onnx model.onnx --out model_int8.onnx --precision int8 \
        [--int8-method dynamic|static] [--calibration-data TRAIN_IMAGES_DIR]

The graph is the whole inference model (backbones, head, calibration, prompt table baked in):
``image`` (B, 3, 224, 224) -> ``affordance``, ``cam``, ``affinity`` (names in
``affordance_grounding.inference.io_spec``), dynamic batch, opset 20, weights inside the file,
labels/calibration/size/normalisation/bundle hash in ``metadata_props``. Every export is
checked (ONNX checker, interface, TensorRT constraints) and compared with PyTorch at batch 1
and 2; past tolerance the export fails with the per-output errors. ``--precision fp16`` writes
an FP16-typed graph (float16 backbones, float32 head and normalisation) for strongly typed
TensorRT builds, checked by cosine >= 0.999 per map instead of an absolute tolerance.
``--text-tower`` also writes ``<out>.text.onnx``: the CLIP text tower (tokens -> unit-length
embedding), which lets the node map action phrases that are neither a label nor a synonym to
the nearest label (off by default: it is large, see affordance_grounding.inference.text_encoder).

``--precision int8`` exports fp32, then quantizes the backbone MatMuls for ONNX Runtime on the
CPU and gates the result on per-map cosine (training/quantize.py); ``--onnx`` starts from an
existing fp32 export.
"""

import argparse
from dataclasses import dataclass, field, replace
import logging
from pathlib import Path
import sys
import time
from typing import Dict, List, Optional, Tuple

from affordance_grounding.config import CALIBRATIONS, load_model_config
from affordance_grounding.fileio import atomic_write
from affordance_grounding.inference.graph import build_grounding_graph, GroundingGraph
from affordance_grounding.inference.io_spec import (
    BackendUnavailableError, BATCH_DIM_NAME, compute_file_sha256, INPUT_NAME, ModelFileError,
    ONNX_OPSET, OUTPUT_NAMES, PRECISIONS)
from affordance_grounding.inference.onnx_model import (
    find_interface_problems, find_tensorrt_problems, write_onnx_metadata)
from affordance_grounding.model.checkpoint import CheckpointError, load_grounder
from affordance_grounding.model.factory import build_grounder
from affordance_grounding.model.grounding import AffordanceGrounder
import numpy as np
import torch

LOGGER = logging.getLogger(__name__)


# Parity tolerances against PyTorch fp32 on the CPU (docs/export.md), used by the exporter and
# by bench.inference: fp32 max abs error on the CPU and on CUDA (TF32 off), fp16 per-map cosine.
FP32_ATOL = 1e-4
FP32_GPU_ATOL = 1e-3
FP16_MIN_COSINE = 0.999


class ExportError(RuntimeError):
    """The exported graph failed a check (checker, interface, TensorRT constraints, parity)."""


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


def compute_map_cosines(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Cosine similarity of every matching (H, W) map of two (B, K, H, W) arrays: (B*K,)."""
    a = actual.reshape(actual.shape[0] * actual.shape[1], -1).astype(np.float64)  # (B*K, H*W)
    e = expected.reshape(a.shape).astype(np.float64)  # (B*K, H*W)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(e, axis=1)
    both_zero = norms == 0
    return np.where(both_zero, 1.0, (a * e).sum(axis=1) / np.where(both_zero, 1.0, norms))


def compute_min_map_cosine(actual: np.ndarray, expected: np.ndarray) -> float:
    """Smallest cosine similarity between matching (H, W) maps of two (B, K, H, W) arrays."""
    return float(compute_map_cosines(actual, expected).min())


def find_parity_failures(report: ExportReport, options: ExportOptions) -> List[str]:
    """Return a line per output past tolerance (fp32: atol; fp16: cosine of cam/affinity)."""
    failures = []
    for batch in options.parity_batches:
        if options.precision == 'fp32':
            failures += [f'batch {batch} {name}: max abs error {error:.3g} > {options.atol:g}'
                         for name, error in report.max_abs_error[batch].items()
                         if not error <= options.atol]
        else:
            failures += [f'batch {batch} {name}: min map cosine {cosine:.6f} < '
                         f'{options.min_cosine}'
                         for name, cosine in report.min_cosine[batch].items()
                         if name != OUTPUT_NAMES[0] and not cosine >= options.min_cosine]
    return failures


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
        failures = find_parity_failures(report, options)
        if failures:
            raise ExportError('ONNX Runtime output differs from PyTorch: ' + '; '.join(failures))

    atomic_write(destination, write_checked)
    report.seconds = time.perf_counter() - started
    return report


class ClipTextTower(torch.nn.Module):
    """open_clip's text tower as a graph: (B, context) int64 tokens -> (B, E) unit embeddings."""

    def __init__(self, clip_model: torch.nn.Module):
        """Wrap a loaded open_clip model (only the text tower ends up in the graph)."""
        super().__init__()
        self.clip = clip_model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encode and L2-normalise."""
        return torch.nn.functional.normalize(self.clip.encode_text(tokens).float(), dim=-1)


def export_text_tower(config_path_or_config, out_path: str, atol: float = 1e-4) -> Path:
    """Write the CLIP text tower of a model config as ONNX and check it against PyTorch.

    Args:
        config_path_or_config: The model config (or its YAML path) whose CLIP weights to use.
        out_path: Destination, normally ``inference.text_encoder.text_model_path(model)``.
        atol: Largest accepted |ONNX - PyTorch| on the embeddings of a few phrases.

    Returns:
        The written path (it appears only when the check passes).

    Raises:
        ExportError: If ONNX Runtime disagrees with PyTorch.
    """
    import onnx
    import onnxruntime
    from affordance_grounding.model.backbones import build_clip_tokenizer, load_clip_model
    from affordance_grounding.inference.text_encoder import (
        CLIP_MODEL_KEY, CONTEXT_LENGTH_KEY, EMBEDDING_NAME, TOKENS_NAME)

    config = config_path_or_config
    if isinstance(config, (str, Path)):
        config = load_model_config(str(config))
    tower = ClipTextTower(load_clip_model(config)).eval()
    tokenizer = build_clip_tokenizer(config)
    tokens = tokenizer(['hold', 'slice it', 'an item to pour with'])  # (3, context)
    fastpath = torch.backends.mha.get_fastpath_enabled()

    def write_checked(temporary: Path) -> None:
        torch.onnx.export(tower, (tokens,), str(temporary), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=[TOKENS_NAME], output_names=[EMBEDDING_NAME],
                          dynamic_axes={TOKENS_NAME: {0: BATCH_DIM_NAME},
                                        EMBEDDING_NAME: {0: BATCH_DIM_NAME}})
        model = onnx.load(str(temporary))
        for key, value in ((CLIP_MODEL_KEY, config.clip_model),
                           (CONTEXT_LENGTH_KEY, str(tokens.shape[1]))):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        onnx.save_model(model, str(temporary))
        session = onnxruntime.InferenceSession(str(temporary),
                                               providers=['CPUExecutionProvider'])
        actual = session.run([EMBEDDING_NAME], {TOKENS_NAME: tokens.numpy()})[0]
        with torch.inference_mode():
            expected = tower(tokens).numpy()
        error = float(np.abs(actual - expected).max())
        if not error <= atol:
            raise ExportError(f'text tower: ONNX Runtime differs from PyTorch by {error:.3g} '
                              f'> {atol:g}')

    torch.backends.mha.set_fastpath_enabled(False)  # open_clip's attention, see docs/export.md
    try:
        return atomic_write(out_path, write_checked)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def format_report(report: ExportReport) -> str:
    """Return a few lines describing the export and its parity numbers."""
    lines = [f'wrote {report.path} ({report.path.stat().st_size / 2**20:.1f} MiB, '
             f'{report.exporter} exporter, {report.seconds:.1f} s)']
    if report.fallback_reason:
        lines.append(f'  dynamo export failed: {report.fallback_reason}')
    for batch, errors in report.max_abs_error.items():
        cosines = report.min_cosine[batch]
        lines.append(f'  batch {batch}: ' + ', '.join(
            f'{name} max abs {errors[name]:.2e} (min cos {cosines[name]:.6f})'
            for name in OUTPUT_NAMES))
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--checkpoint', help='model bundle (.pt)')
    source.add_argument('--config', help='model config YAML: random/untrained weights (tests)')
    source.add_argument('--onnx', help='an fp32 ONNX export to quantize (--precision int8)')
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument('--calibration', default='clip', choices=CALIBRATIONS)
    parser.add_argument('--opset', type=int, default=ONNX_OPSET,
                        help='ONNX opset; above 20 TensorRT 10.3 (JetPack 6) cannot parse it')
    parser.add_argument('--skip-tensorrt-check', action='store_true',
                        help='allow graphs TensorRT 10.3 cannot parse (ONNX Runtime only)')
    parser.add_argument('--precision', default='fp32', choices=PRECISIONS + ('int8',))
    add_int8_arguments(parser)
    parser.add_argument('--fp16', action='store_true', help='same as --precision fp16')
    parser.add_argument('--atol', type=float, default=FP32_ATOL, help='fp32 parity tolerance')
    parser.add_argument('--seed', type=int, default=0, help='seed for --config weights')
    parser.add_argument('--tensorrt-engine', help='also build a TensorRT engine here')
    parser.add_argument('--max-batch', type=int, default=8, help='engine profile max batch')
    parser.add_argument('--text-tower', action='store_true',
                        help='also write <out>.text.onnx, the CLIP text tower that maps free '
                             'action phrases to labels (large; off by default)')
    return parser


def load_source(args: argparse.Namespace) -> Tuple[AffordanceGrounder, str]:
    """Return (grounder, bundle SHA-256 or '') for the chosen model source."""
    if args.checkpoint:
        return load_grounder(args.checkpoint), compute_file_sha256(args.checkpoint)
    torch.manual_seed(args.seed)
    return build_grounder(load_model_config(args.config)), ''


def add_int8_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the int8 options (training/quantize.py)."""
    from training.quantize import DEFAULT_MIN_COSINE, METHODS

    group = parser.add_argument_group('int8 (ONNX Runtime CPU)')
    group.add_argument('--int8-method', default='dynamic', choices=METHODS,
                       help='dynamic: weights int8, activations at run time; static: QDQ '
                            'calibrated on --calibration-data')
    group.add_argument('--calibration-data',
                       help='folder of training images (searched recursively) for calibration '
                            'and the parity gate')
    group.add_argument('--calibration-count', type=int, default=16)
    group.add_argument('--int8-min-cosine', type=float, default=DEFAULT_MIN_COSINE,
                       help='parity gate: smallest per-map cosine of cam and affinity vs fp32')


def export_int8_main(args: argparse.Namespace, options: ExportOptions) -> int:
    """``--precision int8``: export fp32 (unless ``--onnx``), quantize, gate, report."""
    from training.quantize import (
        format_quantize_report, list_image_files, quantize_onnx, QuantizeOptions)

    if args.onnx and args.precision != 'int8':
        raise ValueError('--onnx is the fp32 source of --precision int8')
    if args.tensorrt_engine:
        raise ValueError('an int8 graph is for ONNX Runtime on the CPU; build engines from an '
                         'fp32 or fp16 export')
    images = tuple(str(path) for path in list_image_files(args.calibration_data)) \
        if args.calibration_data else ()
    quantize = QuantizeOptions(method=args.int8_method, calibration_images=images,
                               calibration_count=args.calibration_count,
                               min_cosine=args.int8_min_cosine, seed=args.seed)
    fp32_path = args.onnx
    if fp32_path is None:
        fp32_path = str(Path(args.out).with_name(Path(args.out).stem + '.fp32.onnx'))
        grounder, source_sha256 = load_source(args)
        print(format_report(export_onnx(grounder, fp32_path, replace(options, precision='fp32'),
                                        source_sha256)))
    try:
        print(format_quantize_report(quantize_onnx(fp32_path, args.out, quantize)))
    finally:
        if not args.onnx and Path(fp32_path).exists():
            Path(fp32_path).unlink()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Export (and optionally build an engine); returns a process exit code."""
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    logging.getLogger('affordance_grounding').setLevel(logging.INFO)
    logging.getLogger('training').setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    precision = 'fp16' if args.fp16 else args.precision
    options = ExportOptions(calibration=args.calibration, opset=args.opset,
                            precision=precision, atol=args.atol,
                            check_tensorrt=not args.skip_tensorrt_check)
    try:
        if args.tensorrt_engine:  # before the export: a missing TensorRT fails in a second
            from affordance_grounding.inference.engine_build import probe_target

            probe_target()
        if precision == 'int8' or args.onnx:
            return export_int8_main(args, options)
        grounder, source_sha256 = load_source(args)
        report = export_onnx(grounder, args.out, options, source_sha256)
        print(format_report(report))
        if args.text_tower:
            from affordance_grounding.inference.text_encoder import text_model_path

            text_path = export_text_tower(grounder.config, str(text_model_path(args.out)))
            print(f'text tower: {text_path} ({text_path.stat().st_size / 2**20:.1f} MiB)')
        if args.tensorrt_engine:
            from affordance_grounding.inference.engine_build import (
                EngineBuildOptions, ensure_engine)

            build = EngineBuildOptions(precision=precision, max_batch=args.max_batch)
            print(f'engine: {ensure_engine(args.out, args.tensorrt_engine, options=build)}')
    except (CheckpointError, ExportError, FileNotFoundError, ModelFileError,
            BackendUnavailableError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
