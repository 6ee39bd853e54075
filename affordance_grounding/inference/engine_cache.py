"""The TensorRT engine cache: keys, metadata beside each engine, rebuild decisions.

Pure functions and dataclasses, testable without TensorRT or a GPU; the builder that uses them
is :mod:`engine_build`. An engine is valid only for the ONNX, TensorRT version, GPU compute
capability, precision and batch range it was built for (docs/export.md), so all five form its key.
"""

import dataclasses
from dataclasses import dataclass
import hashlib
import json
from pathlib import Path
from typing import List, Optional

from affordance_grounding.fileio import write_bytes_atomically
from affordance_grounding.inference.io_spec import (
    compute_file_sha256, ModelFileError, ModelMetadata, PRECISIONS, require_file)

ENGINE_META_FORMAT = 'affordance_grounding.engine/1'
REBUILD_FIX = 'rebuild it with `build_engine --onnx MODEL.onnx --force` on this machine'


@dataclass(frozen=True)
class EngineCacheKey:
    """Everything an engine's validity depends on."""

    onnx_sha256: str
    tensorrt_version: str
    compute_capability: str  # 'major.minor', e.g. '8.7' for Jetson AGX Orin
    precision: str
    max_batch: int

    def digest(self) -> str:
        """Return 16 hex characters identifying the key (used in cached file names)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EngineMetadata:
    """The JSON stored beside an engine."""

    key: EngineCacheKey
    engine_sha256: str
    model: ModelMetadata
    gpu_name: str = ''
    build_seconds: float = 0.0

    def to_dict(self) -> dict:
        """Return the JSON-ready form."""
        return {'format': ENGINE_META_FORMAT, 'key': dataclasses.asdict(self.key),
                'engine_sha256': self.engine_sha256, 'model': self.model.to_props(),
                'gpu_name': self.gpu_name, 'build_seconds': self.build_seconds}

    @classmethod
    def from_dict(cls, data: dict, source: str) -> 'EngineMetadata':
        """Parse :meth:`to_dict` output; raises ModelFileError when malformed."""
        if not isinstance(data, dict) or data.get('format') != ENGINE_META_FORMAT:
            raise ModelFileError(f'{source}: not an engine metadata file of format '
                                 f'{ENGINE_META_FORMAT!r}; {REBUILD_FIX}')
        try:
            return cls(key=EngineCacheKey(**data['key']), engine_sha256=data['engine_sha256'],
                       model=ModelMetadata.from_props(data['model'], source),
                       gpu_name=data.get('gpu_name', ''),
                       build_seconds=float(data.get('build_seconds', 0.0)))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f'{source}: malformed engine metadata ({error!r}); '
                                 f'{REBUILD_FIX}') from error


@dataclass(frozen=True)
class EngineBuildOptions:
    """Builder settings.

    Attributes:
        precision: ``auto``, ``fp32`` or ``fp16`` (see :func:`plan_precision`).
        max_batch: Largest batch of the optimisation profile (min 1, optimum ``opt_batch``).
        opt_batch: Batch the kernels are tuned for.
        workspace_gib: Builder workspace memory limit.
        timing_cache_path: Timing cache file (default ``timing.cache`` beside the engine);
            rebuilds after a TensorRT upgrade or for another model reuse it.
    """

    precision: str = 'auto'
    max_batch: int = 8
    opt_batch: int = 1
    workspace_gib: float = 4.0
    timing_cache_path: Optional[str] = None


@dataclass(frozen=True)
class PrecisionPlan:
    """How the network is created and configured for a precision."""

    strongly_typed: bool
    fp16_flag: bool
    precision: str


def plan_precision(onnx_fp16_typed: bool, requested: str, has_fp16_flag: bool) -> PrecisionPlan:
    """Decide the network flags for a precision request.

    Args:
        onnx_fp16_typed: The ONNX stores float16 weights (exported with ``--precision fp16``).
        requested: ``fp32``, ``fp16`` or ``auto`` (the ONNX's own typing: fp16 for an
            FP16-typed graph, else fp32; never a weakly typed FP16 build, whose LayerNorms
            may overflow).
        has_fp16_flag: ``tensorrt.BuilderFlag`` still has ``FP16`` (TensorRT 10, not 11).

    Raises:
        ValueError: For an unknown precision or a combination no TensorRT can build.
    """
    if requested == 'auto':
        requested = 'fp16' if onnx_fp16_typed else 'fp32'
    if requested not in PRECISIONS:
        raise ValueError(f'unknown precision {requested!r}; expected one of {PRECISIONS}')
    if onnx_fp16_typed:
        if requested != 'fp16':
            raise ValueError('this ONNX is FP16-typed: build it with precision fp16, or '
                             'use an FP32 export (--precision fp32, see docs/export.md)')
        return PrecisionPlan(strongly_typed=True, fp16_flag=False, precision='fp16')
    if requested == 'fp32':
        return PrecisionPlan(strongly_typed=True, fp16_flag=False, precision='fp32')
    if not has_fp16_flag:
        raise ValueError('this TensorRT has no BuilderFlag.FP16 (removed in 11.x): precision '
                         'comes from the ONNX; use an FP16-typed export (--precision fp16, see '
                         'docs/export.md)')
    return PrecisionPlan(strongly_typed=False, fp16_flag=True, precision='fp16')


def compute_engine_key(onnx_path: str, tensorrt_version: str, compute_capability: str,
                       precision: str, max_batch: int) -> EngineCacheKey:
    """Hash the ONNX file and return its cache key for this TensorRT and GPU."""
    return EngineCacheKey(onnx_sha256=compute_file_sha256(onnx_path),
                          tensorrt_version=tensorrt_version,
                          compute_capability=compute_capability, precision=precision,
                          max_batch=max_batch)


def cached_engine_path(onnx_path: str, cache_dir: Optional[str], key: EngineCacheKey) -> Path:
    """Return ``<cache_dir>/<onnx stem>.<precision>.<key digest>.engine``."""
    folder = Path(cache_dir) if cache_dir else Path(onnx_path).parent
    return folder / f'{Path(onnx_path).stem}.{key.precision}.{key.digest()}.engine'


def engine_metadata_path(engine_path: str) -> Path:
    """Return the metadata JSON path stored beside an engine."""
    return Path(engine_path).with_suffix('.json')


def write_engine_metadata(path: str, metadata: EngineMetadata) -> Path:
    """Write the metadata JSON atomically."""
    text = json.dumps(metadata.to_dict(), indent=2, sort_keys=True)
    return write_bytes_atomically(Path(path), text.encode())


def read_engine_metadata(path: str) -> EngineMetadata:
    """Read the JSON beside an engine.

    Raises:
        ModelFileError: If it is missing, not JSON or of another format.
    """
    file_path = require_file(path, 'engine metadata', REBUILD_FIX)
    try:
        data = json.loads(file_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f'engine metadata {file_path} is not valid JSON ({error}); '
                             f'{REBUILD_FIX}') from error
    return EngineMetadata.from_dict(data, str(file_path))


def find_key_mismatches(stored: EngineCacheKey, wanted: EngineCacheKey) -> List[str]:
    """Return one line per key field that differs, e.g. ``tensorrt_version 10.3.0 != 11.0``."""
    return [f'{field.name} {getattr(stored, field.name)} != {getattr(wanted, field.name)}'
            for field in dataclasses.fields(EngineCacheKey)
            if getattr(stored, field.name) != getattr(wanted, field.name)]


def find_rebuild_reason(engine_path: str, wanted: EngineCacheKey) -> Optional[str]:
    """Return why a cached engine cannot be reused, or None when it can.

    Checks that the engine and its metadata exist, that the stored key equals ``wanted``
    and that the engine file still has the hash recorded at build time (not truncated).
    """
    engine = Path(engine_path)
    if not engine.is_file():
        return f'no engine at {engine}'
    try:
        stored = read_engine_metadata(str(engine_metadata_path(engine)))
    except ModelFileError as error:
        return str(error)
    mismatches = find_key_mismatches(stored.key, wanted)
    if mismatches:
        return f'{engine} was built for another target: {"; ".join(mismatches)}'
    if compute_file_sha256(str(engine)) != stored.engine_sha256:
        return f'{engine} does not match the hash recorded at build time (truncated?)'
    return None


def check_engine_runs_here(metadata: EngineMetadata, engine_path: str, tensorrt_version: str,
                           compute_capability: str) -> None:
    """Raise ModelFileError when an engine was built for another TensorRT or GPU, or changed.

    Used when an ``.engine`` is given directly (no ONNX to rebuild from).
    """
    key = metadata.key
    problems = []
    if key.tensorrt_version != tensorrt_version:
        problems.append(f'TensorRT {key.tensorrt_version} (this machine: {tensorrt_version})')
    if key.compute_capability != compute_capability:
        problems.append(f'compute capability {key.compute_capability} (this GPU: '
                        f'{compute_capability})')
    if problems:
        raise ModelFileError(f'engine {engine_path} was built for {" and ".join(problems)}; '
                             f'engines are not portable: {REBUILD_FIX}')
    if compute_file_sha256(engine_path) != metadata.engine_sha256:
        raise ModelFileError(f'engine {engine_path} does not match the hash recorded at build '
                             f'time (truncated or replaced); {REBUILD_FIX}')
