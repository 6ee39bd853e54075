"""The contract of an exported model, shared by the exporter and every backend.

One set of tensor names, one metadata record and one error type: the ONNX exporter writes
them, ONNX Runtime, TensorRT and PyTorch read them (nanoowl's ``owl_predictor.py`` shape).
Pure Python: importing this module loads neither torch nor onnx.

Graph interface (every backend, every precision)::

    image       input   float32 (B, 3, S, S)  RGB, normalised with the recorded mean/std
    affordance  output  float32 (B, K, S, S)  selected calibration, upsampled, min-max [0, 1]
    cam         output  float32 (B, K, G, G)  raw class activation maps (may be negative)
    affinity    output  float32 (B, K, G, G)  min-max CLIP patch-prompt affinity in [0, 1]
"""

from dataclasses import dataclass
import hashlib
import json
from pathlib import Path
from typing import Dict, Mapping, Tuple

from affordance_grounding.vocabulary import describe_label_mismatch

INPUT_NAME = 'image'
AFFORDANCE_NAME = 'affordance'
CAM_NAME = 'cam'
AFFINITY_NAME = 'affinity'
OUTPUT_NAMES: Tuple[str, ...] = (AFFORDANCE_NAME, CAM_NAME, AFFINITY_NAME)
BATCH_DIM_NAME = 'batch'
IMAGE_CHANNELS = 3

ONNX_OPSET = 20  # opset 23+ turns attention into an Attention op TensorRT 10.3 cannot parse
MODEL_FORMAT = 'affordance_grounding.onnx/1'
PRECISIONS: Tuple[str, ...] = ('fp32', 'fp16')

ONNX_SUFFIXES = ('.onnx',)
ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')
BUNDLE_SUFFIXES = ('.pt', '.pth', '.ckpt')


# What a robot can do about a bad model file: it has the exported files and ``build_engine``,
# not the training code, so the hints point at the training machine's export (docs/export.md).
MISSING_ONNX_HINT = ('copy the .onnx exported on the training machine here (see docs/export.md, '
                     '"Exporting a model")')
REEXPORT_HINT = ('replace it with a fresh export from the training machine (see docs/export.md, '
                 '"Exporting a model")')


class ModelFileError(RuntimeError):
    """A model file (ONNX, engine, metadata) is missing, truncated, corrupt or incompatible."""


class BackendUnavailableError(RuntimeError):
    """A backend cannot run here (library, provider or device missing); another one may."""


@dataclass(frozen=True)
class ModelMetadata:
    """What a runner needs to know about an exported graph, stored in its ONNX/engine.

    Attributes:
        labels: Affordance labels, in output channel order (K of them).
        calibration: The map in ``affordance``: ``none``, ``clip`` or ``clip_local_mean``.
        image_size: Input side S in pixels.
        grid_size: Side G of ``cam`` and ``affinity``.
        mean: Per-channel normalisation mean of [0, 1] RGB the input must have.
        std: Per-channel normalisation std.
        precision: ``fp32`` or ``fp16`` (the type of the backbones inside the graph).
        source_sha256: SHA-256 of the checkpoint bundle the graph was exported from.
    """

    labels: Tuple[str, ...]
    calibration: str
    image_size: int
    grid_size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    precision: str = 'fp32'
    source_sha256: str = ''

    def to_props(self) -> Dict[str, str]:
        """Return string key/values for ONNX ``metadata_props`` (JSON for non-strings)."""
        return {
            'format': MODEL_FORMAT,
            'labels': json.dumps(list(self.labels)),
            'calibration': self.calibration,
            'image_size': str(self.image_size),
            'grid_size': str(self.grid_size),
            'mean': json.dumps(list(self.mean)),
            'std': json.dumps(list(self.std)),
            'precision': self.precision,
            'source_sha256': self.source_sha256,
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str) -> 'ModelMetadata':
        """Parse :meth:`to_props` output.

        Args:
            props: The key/value strings (ONNX ``metadata_props`` or an engine's JSON).
            source: File name used in error messages.

        Raises:
            ModelFileError: If the metadata is absent, of another format or malformed.
        """
        if props.get('format') != MODEL_FORMAT:
            raise ModelFileError(
                f'{source}: no affordance_grounding metadata (format '
                f'{props.get("format")!r}, expected {MODEL_FORMAT!r}); {REEXPORT_HINT}')
        try:
            return cls(labels=tuple(json.loads(props['labels'])),
                       calibration=props['calibration'],
                       image_size=int(props['image_size']),
                       grid_size=int(props['grid_size']),
                       mean=tuple(float(x) for x in json.loads(props['mean'])),
                       std=tuple(float(x) for x in json.loads(props['std'])),
                       precision=props.get('precision', 'fp32'),
                       source_sha256=props.get('source_sha256', ''))
        except (KeyError, ValueError, TypeError) as error:
            raise ModelFileError(f'{source}: malformed model metadata ({error!r}); '
                                 f'{REEXPORT_HINT}') from error

    def check_labels(self, expected_labels, source: str) -> None:
        """Raise a clear error when the graph's labels differ from the expected list.

        Args:
            expected_labels: The labels the caller needs, or None to accept any.
            source: File name used in the message.

        Raises:
            ModelFileError: If the label lists differ.
        """
        problem = describe_label_mismatch(self.labels, expected_labels, source)
        if problem:
            raise ModelFileError(problem)


def compute_file_sha256(path: str, chunk_bytes: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file, read in chunks (model files are hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open('rb') as stream:
        for chunk in iter(lambda: stream.read(chunk_bytes), b''):
            digest.update(chunk)
    return digest.hexdigest()


def classify_model_file(path: str) -> str:
    """Return ``onnx``, ``engine`` or ``bundle`` from a model file's suffix.

    Raises:
        ModelFileError: If the suffix is none of the known ones.
    """
    suffix = Path(path).suffix.lower()
    for kind, suffixes in (('onnx', ONNX_SUFFIXES), ('engine', ENGINE_SUFFIXES),
                           ('bundle', BUNDLE_SUFFIXES)):
        if suffix in suffixes:
            return kind
    raise ModelFileError(
        f'{path}: unknown model file type {suffix!r}; expected an ONNX graph '
        f'({", ".join(ONNX_SUFFIXES)}), a TensorRT engine ({", ".join(ENGINE_SUFFIXES)}) or a '
        f'checkpoint bundle ({", ".join(BUNDLE_SUFFIXES)})')


def require_file(path: str, what: str, fix: str) -> Path:
    """Return ``path`` as a Path, or raise ModelFileError naming the file and the fix."""
    file_path = Path(path)
    if not file_path.is_file():
        raise ModelFileError(f'{what} not found: {file_path}; {fix}')
    if file_path.stat().st_size == 0:
        raise ModelFileError(f'{what} {file_path} is empty (an interrupted write?); {fix}')
    return file_path
