r"""Build TensorRT engines on the target, and cache them keyed by what makes them valid.

Engines run only on the GPU architecture and TensorRT version they were built with, so the
ONNX ships and the engine is built at first start, then reused while its key matches::

    build_engine --onnx model.onnx [--engine model.engine | --cache-dir DIR] \
        [--precision fp32|fp16] [--max-batch 8] [--timing-cache timing.cache] [--force]

Key: (ONNX SHA-256, TensorRT version, compute capability, precision, max batch); a JSON file
beside the engine records it with the engine's own hash and the model metadata. The cache
logic is pure and lives in :mod:`engine_cache`; this module holds the TensorRT calls.

Precision (docs/export.md): an FP16-typed ONNX (``training.export --precision fp16``) is built as
a STRONGLY_TYPED network, which TensorRT 10.3 and 11.x both accept. An FP32 ONNX builds an
FP32 engine (TF32 off, for parity); asking it for fp16 uses ``BuilderFlag.FP16`` where it
still exists (TensorRT 10) and is refused on 11.x, which removed the flag.
"""

import argparse
import logging
from pathlib import Path
import sys
import time
from typing import List, Optional, Tuple

from affordance_grounding.fileio import write_bytes_atomically
from affordance_grounding.inference.engine_cache import (
    cached_engine_path, compute_engine_key, engine_metadata_path, EngineBuildOptions,
    EngineCacheKey, EngineMetadata, find_rebuild_reason, plan_precision, PrecisionPlan,
    write_engine_metadata)
from affordance_grounding.inference.io_spec import (
    BackendUnavailableError, compute_file_sha256, INPUT_NAME, MISSING_ONNX_HINT, ModelFileError,
    ModelMetadata, PRECISIONS, REEXPORT_HINT, require_file)

LOGGER = logging.getLogger(__name__)


def import_tensorrt():
    """Import TensorRT, or raise BackendUnavailableError saying how to get it."""
    try:
        import tensorrt
    except ImportError as error:
        raise BackendUnavailableError(
            'tensorrt is not importable: on Jetson (JetPack 6) use the system TensorRT from a '
            "venv made with --system-site-packages; on x86 install NVIDIA's tensorrt wheel "
            'for your CUDA (pip install tensorrt-cu12 or tensorrt-cu13); or use another '
            'backend (onnxruntime, torch)') from error
    return tensorrt


def probe_target(device_index: int = 0) -> Tuple[str, str, str]:
    """Return (TensorRT version, compute capability 'major.minor', GPU name) of this machine.

    Raises:
        BackendUnavailableError: If TensorRT or a CUDA device is missing.
    """
    trt = import_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError('TensorRT needs a CUDA device; torch sees none')
    major, minor = torch.cuda.get_device_capability(device_index)
    return trt.__version__, f'{major}.{minor}', torch.cuda.get_device_name(device_index)


def ensure_engine(onnx_path: str, engine_path: Optional[str] = None,
                  cache_dir: Optional[str] = None,
                  options: EngineBuildOptions = EngineBuildOptions(), force: bool = False,
                  device_index: int = 0) -> Path:
    """Return an engine for ``onnx_path`` on this machine, building it only when needed.

    Args:
        onnx_path: Exported ONNX graph.
        engine_path: Where the engine goes; default: a key-named file in ``cache_dir``.
        cache_dir: Folder for key-named engines (default: the ONNX file's folder).
        options: Builder settings.
        force: Rebuild even when the cached engine matches.
        device_index: CUDA device to build for.

    Returns:
        The engine path (its metadata JSON is beside it).
    """
    require_file(onnx_path, 'ONNX model', MISSING_ONNX_HINT)
    from affordance_grounding.inference.onnx_model import is_fp16_typed, load_onnx_model

    version, capability, _ = probe_target(device_index)
    trt = import_tensorrt()
    fp16_typed = is_fp16_typed(load_onnx_model(onnx_path))
    plan = plan_precision(fp16_typed, options.precision, hasattr(trt.BuilderFlag, 'FP16'))
    key = compute_engine_key(onnx_path, version, capability, plan.precision, options.max_batch)
    target = Path(engine_path) if engine_path else cached_engine_path(onnx_path, cache_dir, key)
    reason = 'forced' if force else find_rebuild_reason(str(target), key)
    if reason is None:
        LOGGER.info('reusing TensorRT engine %s (key %s)', target, key.digest())
        return target
    LOGGER.info('building TensorRT engine %s: %s', target, reason)
    build_engine_file(onnx_path, target, key, plan, options)
    return target


def build_engine_file(onnx_path: str, engine_path: Path, key: EngineCacheKey,
                      plan: PrecisionPlan, options: EngineBuildOptions) -> EngineMetadata:
    """Parse the ONNX and build the engine, then write it, its timing cache and metadata.

    Raises:
        ModelFileError: If the ONNX breaks our interface or TensorRT cannot parse it.
        RuntimeError: If TensorRT fails to build (its log says why).
    """
    from affordance_grounding.inference.onnx_model import inspect_onnx_file

    model_metadata = inspect_onnx_file(onnx_path)  # interface and TensorRT constraints
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(index)) for index in range(parser.num_errors)]
        raise ModelFileError(f'TensorRT {trt.__version__} cannot parse {onnx_path}: '
                             f'{"; ".join(errors[:5])}; {REEXPORT_HINT}')
    config, monitor = _create_builder_config(trt, builder, plan, options, model_metadata)
    cache_path = Path(options.timing_cache_path or engine_path.parent / 'timing.cache')
    _attach_timing_cache(config, cache_path)
    LOGGER.info('TensorRT %s: building a %s engine for batch 1..%d from %s (minutes on a '
                'Jetson)', trt.__version__, plan.precision, options.max_batch, onnx_path)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    del monitor
    if serialized is None:
        raise RuntimeError(f'TensorRT failed to build an engine from {onnx_path}; see the '
                           f'TensorRT errors logged above')
    write_bytes_atomically(engine_path, serialized)
    write_bytes_atomically(cache_path, config.get_timing_cache().serialize())
    import torch

    metadata = EngineMetadata(key=key, engine_sha256=compute_file_sha256(str(engine_path)),
                              model=model_metadata, build_seconds=round(seconds, 1),
                              gpu_name=torch.cuda.get_device_name())
    write_engine_metadata(str(engine_metadata_path(engine_path)), metadata)
    LOGGER.info('wrote %s in %.0f s (timing cache %s)', engine_path, seconds, cache_path)
    return metadata


def _create_builder_config(trt, builder, plan: PrecisionPlan, options: EngineBuildOptions,
                           metadata: ModelMetadata):
    """Return (builder config, progress monitor): workspace, precision, dynamic batch."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                 int(options.workspace_gib * (1 << 30)))
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.precision == 'fp32' and hasattr(trt.BuilderFlag, 'TF32'):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32 (parity atol 1e-3)
    size = metadata.image_size
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, 3, size, size), (options.opt_batch, 3, size, size),
                      (options.max_batch, 3, size, size))
    config.add_optimization_profile(profile)
    monitor = _make_progress_monitor(trt)
    config.progress_monitor = monitor
    return config, monitor


def _attach_timing_cache(config, path: Path) -> None:
    """Start from the timing cache file when it exists and fits; else from an empty one."""
    data = path.read_bytes() if path.is_file() else b''
    try:
        cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            LOGGER.info('timing cache: %s (%d bytes)', path, len(data))
            return
    except Exception as error:  # a corrupt cache file must not stop the build
        LOGGER.warning('ignoring unreadable timing cache %s: %s', path, error)
    config.set_timing_cache(config.create_timing_cache(b''), ignore_mismatch=False)


def _make_progress_monitor(trt):
    """Return a TensorRT progress monitor that logs top-level build phases."""

    class LoggingProgressMonitor(trt.IProgressMonitor):
        """Logs each top-level phase at INFO and nested ones at DEBUG."""

        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            level = logging.INFO if parent_phase is None else logging.DEBUG
            LOGGER.log(level, 'TensorRT build: %s (%d steps)', phase_name, num_steps)

        def step_complete(self, phase_name, step):
            LOGGER.debug('TensorRT build: %s step %d', phase_name, step)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            LOGGER.debug('TensorRT build: %s done', phase_name)

    return LoggingProgressMonitor()


def build_parser() -> argparse.ArgumentParser:
    """Return the ``build_engine`` command-line parser."""
    parser = argparse.ArgumentParser(description='Build (or reuse) a TensorRT engine for an '
                                     'exported ONNX graph on this machine.')
    parser.add_argument('--onnx', required=True, help='ONNX file from training.export')
    target = parser.add_mutually_exclusive_group()
    target.add_argument('--engine', help='engine file to write (metadata JSON beside it)')
    target.add_argument('--cache-dir', help='folder for key-named cached engines')
    parser.add_argument('--precision', default='auto', choices=('auto',) + PRECISIONS,
                        help="auto: the ONNX's own typing (fp16 for an FP16-typed graph)")
    parser.add_argument('--max-batch', type=int, default=8)
    parser.add_argument('--opt-batch', type=int, default=1)
    parser.add_argument('--workspace-gib', type=float, default=4.0)
    parser.add_argument('--timing-cache', help='timing cache file (default: beside the engine)')
    parser.add_argument('--device', type=int, default=0, help='CUDA device index')
    parser.add_argument('--force', action='store_true', help='rebuild even if the cache matches')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Build or reuse an engine; returns a process exit code."""
    logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(levelname)s %(message)s')
    logging.getLogger('affordance_grounding').setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    options = EngineBuildOptions(precision=args.precision, max_batch=args.max_batch,
                                 opt_batch=args.opt_batch, workspace_gib=args.workspace_gib,
                                 timing_cache_path=args.timing_cache)
    started = time.perf_counter()
    try:
        engine = ensure_engine(args.onnx, args.engine, args.cache_dir, options, args.force,
                               args.device)
    except (ModelFileError, BackendUnavailableError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print(f'engine ready: {engine} ({time.perf_counter() - started:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
