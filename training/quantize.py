r"""INT8 graphs for ONNX Runtime on the CPU, made from an exported fp32 graph and gated on parity.

    python -m training.export --checkpoint best.pt --out model_int8.onnx --precision int8 \
        [--int8-method dynamic|static] [--int8-images data/AGD20K/Seen/trainset]

ONNX Runtime's quantization tooling (``onnxruntime.quantization``) does the work; this module
chooses what to quantize and checks the result. Only the MatMul/Gemm layers with constant
weights inside the backbones' transformer blocks become int8 (about 96% of the FLOPs); the
patch embeddings, LayerNorm, softmax, the attention products, CLIP's output projection, the
ClearCLIP and DINO-key paths of the last blocks, the head and the calibration stay fp32.

* ``dynamic``: weights int8 per output channel, activations quantized at run time per tensor
  (``DynamicQuantizeLinear`` + ``MatMulInteger``, fused by ONNX Runtime); no calibration.
* ``static``: QDQ, activation ranges from MinMax calibration over training images.

Parity gate: per-map cosine of ``cam`` and ``affinity`` against the fp32 graph on images the
model is meant for (``--int8-images``, held out from the calibration images; seeded random
images without it), every map at least ``training.parity.INT8_MIN_COSINE`` (the value and how
it was chosen: docs/benchmarks.md, INT8). Below it the export fails and writes nothing.
"""

from dataclasses import dataclass, field, replace
import logging
from pathlib import Path
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

from affordance_grounding.fileio import atomic_write
from affordance_grounding.inference.backends import INT8_PRECISION, QUANTIZATION_KEY
from affordance_grounding.inference.io_spec import INPUT_NAME, OUTPUT_NAMES
from affordance_grounding.inference.onnx_model import (
    load_onnx_model, read_onnx_metadata, write_onnx_metadata)
from affordance_grounding.perception.preprocess import ImagePreprocessor
import cv2
import numpy as np
from training.parity import (
    compute_map_cosines, COSINE_GATED_OUTPUTS, ExportError, INT8_MIN_COSINE)

LOGGER = logging.getLogger(__name__)

METHODS = ('dynamic', 'static')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
# A transformer block of either backbone: open_clip's resblocks.N, timm's blocks.N.
BLOCK_SCOPE = re.compile(r'(?:^|[./])(?:resblocks|blocks)[./]\d+(?:[./]|$)')
SCOPE_KEY = 'pkg.torch.onnx.name_scopes'


class QuantizationError(ExportError):
    """The int8 graph could not be made or fails the parity gate."""


@dataclass(frozen=True)
class QuantizeOptions:
    """INT8 settings.

    Attributes:
        method: ``dynamic`` or ``static`` (QDQ with calibration).
        calibration_images: Image files (training images) for calibration and the parity gate.
        calibration_count: Images used to calibrate (static).
        parity_count: Images (disjoint from the calibration ones) compared with fp32.
        min_cosine: Parity gate: smallest per-map cosine of ``cam`` and ``affinity``.
        per_channel: Per-output-channel weight scales.
        seed: Seed of the image draw (and of the random parity images without images).
    """

    method: str = 'dynamic'
    calibration_images: Tuple[str, ...] = ()
    calibration_count: int = 16
    parity_count: int = 8
    min_cosine: float = INT8_MIN_COSINE
    per_channel: bool = True
    seed: int = 0


@dataclass
class QuantizeReport:
    """What the quantization produced and measured.

    Attributes:
        path: The int8 ONNX file.
        method: ``dynamic`` or ``static``.
        quantized_nodes: MatMul/Gemm nodes made int8.
        kept_fp32_nodes: MatMul/Gemm nodes left fp32.
        min_cosine: {output: smallest per-map cosine vs fp32}.
        mean_cosine: {output: mean per-map cosine vs fp32}.
        parity_images: What the gate ran on.
        seconds: Quantization and check time.
    """

    path: Path
    method: str
    quantized_nodes: int = 0
    kept_fp32_nodes: int = 0
    min_cosine: Dict[str, float] = field(default_factory=dict)
    mean_cosine: Dict[str, float] = field(default_factory=dict)
    parity_images: str = ''
    seconds: float = 0.0


def node_scope(node) -> str:
    """Return the module path of a node: the dynamo exporter's name scopes, else its name."""
    for entry in node.metadata_props:
        if entry.key == SCOPE_KEY:
            return entry.value
    return node.name


def select_backbone_matmuls(model) -> Tuple[List[str], List[str]]:
    """Split MatMul/Gemm nodes into (quantize, keep fp32).

    Quantized: constant right-hand side (a weight) inside a backbone transformer block.
    Everything else stays fp32: attention products (two activations), the head, CLIP's
    projection, the last blocks' ClearCLIP/key paths (sliced weights) and the calibration.
    """
    constants = {tensor.name for tensor in model.graph.initializer}
    constants |= {node.output[0] for node in model.graph.node if node.op_type == 'Constant'}
    chosen, kept = [], []
    for node in model.graph.node:
        if node.op_type not in ('MatMul', 'Gemm'):
            continue
        weight_constant = len(node.input) > 1 and node.input[1] in constants
        in_block = BLOCK_SCOPE.search(node_scope(node)) is not None
        (chosen if weight_constant and in_block else kept).append(node.name)
    return chosen, kept


def list_image_files(root: str) -> List[Path]:
    """Every image file under ``root`` (recursive), sorted; ``root`` may be one file."""
    path = Path(root)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise QuantizationError(f'calibration data not found: {root}')
    files = sorted(item for item in path.rglob('*') if item.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise QuantizationError(f'no images ({", ".join(IMAGE_SUFFIXES)}) under {root}')
    return files


def split_images(files: Sequence[Path], calibration: int, parity: int,
                 seed: int) -> Tuple[List[Path], List[Path]]:
    """Draw disjoint (calibration, parity) image lists, deterministically."""
    order = np.random.default_rng(seed).permutation(len(files))
    chosen = [files[index] for index in order]
    parity = min(parity, max(1, len(chosen) // 3))
    return chosen[parity:parity + calibration], chosen[:parity]


def load_images(files: Sequence[Path], preprocessor: ImagePreprocessor) -> np.ndarray:
    """Read image files as the node would see them: (N, 3, S, S) float32."""
    batches = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise QuantizationError(f'cannot read image {path}')
        batches.append(preprocessor(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).numpy())
    return np.concatenate(batches)


class _ImageReader:
    """Calibration data reader: one image per call (ONNX Runtime's CalibrationDataReader)."""

    def __init__(self, images: np.ndarray):
        self._images = list(images[:, None])

    def get_next(self):
        return {INPUT_NAME: self._images.pop(0)} if self._images else None


def run_quantizer(source: Path, target: Path, nodes: List[str], options: QuantizeOptions,
                  calibration: Optional[np.ndarray]) -> None:
    """Write the quantized graph with ONNX Runtime's tooling."""
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, quantize_dynamic,
        quantize_static, QuantType)

    common = {'op_types_to_quantize': ['MatMul', 'Gemm'], 'per_channel': options.per_channel,
              'weight_type': QuantType.QInt8, 'nodes_to_quantize': nodes,
              'extra_options': {'MatMulConstBOnly': True}}
    if options.method == 'dynamic':
        quantize_dynamic(str(source), str(target), **common)
        return
    if calibration is None or not len(calibration):
        raise QuantizationError('static int8 needs calibration images (--int8-images)')
    reader = type('Reader', (_ImageReader, CalibrationDataReader), {})(calibration)
    quantize_static(str(source), str(target), reader, quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax,
                    **common)


def compare_maps(fp32_path: Path, int8_path: Path, images: np.ndarray
                 ) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Per-map cosine of every output, int8 vs fp32 (ONNX Runtime CPU, one image a run)."""
    import onnxruntime

    sessions = [onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
                for path in (fp32_path, int8_path)]
    cosines: Dict[str, List[np.ndarray]] = {name: [] for name in OUTPUT_NAMES}
    for image in images:
        want, got = (session.run(list(OUTPUT_NAMES), {INPUT_NAME: image[None]})
                     for session in sessions)
        for name, a, e in zip(OUTPUT_NAMES, got, want):
            cosines[name].append(compute_map_cosines(a, e))
    joined = {name: np.concatenate(values) for name, values in cosines.items()}
    return ({name: float(values.min()) for name, values in joined.items()},
            {name: float(values.mean()) for name, values in joined.items()})


def quantize_onnx(fp32_path: str, out_path: str,
                  options: QuantizeOptions = QuantizeOptions()) -> QuantizeReport:
    """Make an int8 graph from an exported fp32 one; the file appears only if the gate passes.

    Args:
        fp32_path: An fp32 ONNX file written by ``training.export``.
        out_path: Destination of the int8 graph.
        options: Method, images and gate.

    Raises:
        QuantizationError: If the method is unknown, images are missing or unreadable, or the
            int8 maps differ from fp32 past ``options.min_cosine``.
    """
    if options.method not in METHODS:
        raise QuantizationError(f'unknown int8 method {options.method!r}; expected {METHODS}')
    started = time.perf_counter()
    model = load_onnx_model(fp32_path)
    metadata = read_onnx_metadata(model, fp32_path)
    if metadata.precision != 'fp32':
        raise QuantizationError(f'{fp32_path} is {metadata.precision}; int8 starts from fp32')
    nodes, kept = select_backbone_matmuls(model)
    if not nodes:
        raise QuantizationError(f'{fp32_path}: no backbone MatMul with constant weights found')
    del model
    preprocessor = ImagePreprocessor(metadata.image_size, metadata.mean, metadata.std)
    calibration = None
    if options.calibration_images:
        calibration_files, parity_files = split_images(
            [Path(path) for path in options.calibration_images], options.calibration_count,
            options.parity_count, options.seed)
        calibration = load_images(calibration_files, preprocessor)
        parity = load_images(parity_files, preprocessor)
        described = f'{len(parity_files)} images held out from {len(calibration_files)} used ' \
                    f'for calibration' if options.method == 'static' else \
                    f'{len(parity_files)} images'
    else:
        size = metadata.image_size
        parity = np.random.default_rng(options.seed).standard_normal(
            (options.parity_count, 3, size, size)).astype(np.float32)
        described = f'{options.parity_count} random normal images (no --int8-images)'
    destination = Path(out_path)
    report = QuantizeReport(path=destination, method=options.method, quantized_nodes=len(nodes),
                            kept_fp32_nodes=len(kept), parity_images=described)

    def write_gated(temporary: Path) -> None:
        run_quantizer(Path(fp32_path), temporary, nodes, options, calibration)
        mark_int8(temporary, metadata, options.method)
        report.min_cosine, report.mean_cosine = compare_maps(Path(fp32_path), temporary, parity)
        failures = [f'{name}: min map cosine {report.min_cosine[name]:.4f} < '
                    f'{options.min_cosine}' for name in COSINE_GATED_OUTPUTS
                    if not report.min_cosine[name] >= options.min_cosine]
        if failures:
            raise QuantizationError(f'int8 ({options.method}) maps differ from fp32 on '
                                    f'{described}: ' + '; '.join(failures))

    atomic_write(destination, write_gated)  # the file appears only when the gate passes
    report.seconds = time.perf_counter() - started
    return report


def mark_int8(path: Path, metadata, method: str) -> None:
    """Record ``precision: int8`` and the method in the graph's metadata (in place)."""
    import onnx

    model = onnx.load(str(path))
    write_onnx_metadata(model, replace(metadata, precision=INT8_PRECISION))
    entry = next((item for item in model.metadata_props if item.key == QUANTIZATION_KEY), None)
    if entry is None:
        entry = model.metadata_props.add()
        entry.key = QUANTIZATION_KEY
    entry.value = method
    onnx.save_model(model, str(path), save_as_external_data=False)


def format_quantize_report(report: QuantizeReport) -> str:
    """Return a few lines: the file, what was quantized, the gate's numbers."""
    size = report.path.stat().st_size / 2 ** 20 if report.path.exists() else 0.0
    return '\n'.join([
        f'wrote {report.path} ({size:.1f} MiB, int8 {report.method}, '
        f'{report.quantized_nodes} MatMul/Gemm int8, {report.kept_fp32_nodes} kept fp32, '
        f'{report.seconds:.1f} s)',
        f'  parity vs fp32 on {report.parity_images}: ' + ', '.join(
            f'{name} min cos {report.min_cosine[name]:.5f} (mean '
            f'{report.mean_cosine[name]:.5f})' for name in OUTPUT_NAMES)])
