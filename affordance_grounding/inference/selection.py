"""Pick the fastest backend that can run a model file here, saying why faster ones cannot.

Order (docs/export.md, "Backend order"): TensorRT, PyTorch CUDA, ONNX Runtime CUDA, ONNX
Runtime CPU, PyTorch CPU.
A candidate is skipped when its library, provider or device is missing or when it cannot read
the given file type (ONNX/engine vs checkpoint bundle; an int8 ONNX graph runs on ONNX Runtime
CPU only); each reason is logged. A broken model file is never skipped over: its error is
raised, since no other backend would do better.
"""

from dataclasses import dataclass
import logging
import re
from typing import List, Optional, Tuple

from affordance_grounding.inference.backends import (
    BackendOptions, InferenceBackend, OnnxRuntimeBackend, TorchBackend)
from affordance_grounding.inference.io_spec import (
    BackendUnavailableError, classify_model_file, MISSING_ONNX_HINT, ModelFileError,
    require_file)

LOGGER = logging.getLogger(__name__)

BACKEND_NAMES: Tuple[str, ...] = ('tensorrt', 'torch', 'onnxruntime')
AUTO_ORDER: Tuple[Tuple[str, str], ...] = (
    ('tensorrt', 'cuda'), ('torch', 'cuda'), ('onnxruntime', 'cuda'), ('onnxruntime', 'cpu'),
    ('torch', 'cpu'))
FILE_KINDS = {'tensorrt': ('onnx', 'engine'), 'torch': ('bundle',), 'onnxruntime': ('onnx',)}
FILE_KIND_NAMES = {'onnx': 'an ONNX graph', 'engine': 'a TensorRT engine',
                   'bundle': 'a checkpoint bundle'}
DEVICE_PATTERN = re.compile(r'^(auto|cpu|cuda(:\d+)?)$')
NO_CUDA = 'no CUDA device (torch.cuda.is_available() is False)'


def warn_cpu_fallback() -> None:
    """Log the one warning of ``device: auto`` on a machine without CUDA."""
    LOGGER.warning('device auto: %s, running on the CPU', NO_CUDA)


def resolve_device(device: str, cuda_available: Optional[bool] = None) -> str:
    """Turn a device setting into a concrete one: the single place ``auto`` is decided.

    ``auto`` becomes ``cuda`` when PyTorch sees a CUDA device and ``cpu`` otherwise, with one
    warning (a robot that silently runs on its CPU is slow for no visible reason). An explicit
    ``cuda`` on a machine without CUDA is an error here rather than a driver traceback later.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        cuda_available: What the machine offers (default: ``torch.cuda.is_available()``).

    Raises:
        ValueError: For a malformed device string.
        BackendUnavailableError: For ``cuda``/``cuda:N`` without a CUDA device.
    """
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise ValueError(f'unknown device {device!r}; expected auto, cpu, cuda or cuda:N')
    if device == 'cpu':
        return device
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if device == 'auto':
        if cuda_available:
            return 'cuda'
        warn_cpu_fallback()
        return 'cpu'
    if not cuda_available:
        raise BackendUnavailableError(f'device {device!r} requested but there is {NO_CUDA}; '
                                      'use device auto or cpu')
    return device


@dataclass(frozen=True)
class Environment:
    """What this machine offers the backends.

    Attributes:
        cuda_available: ``torch.cuda.is_available()``.
        tensorrt_problem: Why TensorRT cannot be imported, or None when it can.
        onnxruntime_problem: Why onnxruntime cannot be imported, or None when it can.
        onnxruntime_providers: ONNX Runtime's available execution providers.
    """

    cuda_available: bool
    tensorrt_problem: Optional[str]
    onnxruntime_problem: Optional[str]
    onnxruntime_providers: Tuple[str, ...] = ()


def probe_environment() -> Environment:
    """Inspect CUDA, TensorRT and ONNX Runtime (imports them; nothing is loaded)."""
    import torch

    from affordance_grounding.inference.backends import import_onnxruntime
    from affordance_grounding.inference.engine_build import import_tensorrt

    problems = {}
    providers: Tuple[str, ...] = ()
    for name, importer in (('tensorrt', import_tensorrt), ('onnxruntime', import_onnxruntime)):
        try:
            module = importer()
        except BackendUnavailableError as error:
            problems[name] = str(error)
        else:
            if name == 'onnxruntime':
                providers = tuple(module.get_available_providers())
    return Environment(cuda_available=torch.cuda.is_available(),
                       tensorrt_problem=problems.get('tensorrt'),
                       onnxruntime_problem=problems.get('onnxruntime'),
                       onnxruntime_providers=providers)


def find_skip_reasons(backend: str, device_type: str, file_kind: str,
                      environment: Environment) -> List[str]:
    """Return why ``backend`` on ``device_type`` cannot run a ``file_kind`` here (empty: it can).

    Args:
        backend: ``tensorrt``, ``torch`` or ``onnxruntime``.
        device_type: ``cuda`` or ``cpu``.
        file_kind: ``onnx``, ``engine`` or ``bundle`` (:func:`classify_model_file`).
        environment: What the machine offers.
    """
    reasons = []
    if file_kind not in FILE_KINDS[backend]:
        wanted = ' or '.join(FILE_KIND_NAMES[kind] for kind in FILE_KINDS[backend])
        reasons.append(f'needs {wanted}, got {FILE_KIND_NAMES[file_kind]}')
    if backend == 'tensorrt' and environment.tensorrt_problem:
        reasons.append(environment.tensorrt_problem)
    if backend == 'onnxruntime' and environment.onnxruntime_problem:
        reasons.append(environment.onnxruntime_problem)
    if device_type == 'cuda' and not environment.cuda_available and backend != 'onnxruntime':
        reasons.append(NO_CUDA)
    if (backend == 'onnxruntime' and device_type == 'cuda' and not environment.onnxruntime_problem
            and 'CUDAExecutionProvider' not in environment.onnxruntime_providers):
        reasons.append('onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)')
    return reasons


def list_candidates(name: str, device: str) -> List[Tuple[str, str]]:
    """Return the (backend, device) pairs to try, in order, for a request.

    Args:
        name: ``auto`` or one of :data:`BACKEND_NAMES`.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ValueError: For an unknown backend name or device.
    """
    if name != 'auto' and name not in BACKEND_NAMES:
        raise ValueError(f'unknown backend {name!r}; expected auto or one of {BACKEND_NAMES}')
    if not DEVICE_PATTERN.match(device):
        raise ValueError(f'unknown device {device!r}; expected auto, cpu, cuda or cuda:N')
    device_type = device.split(':')[0]
    candidates = [(backend, kind) for backend, kind in AUTO_ORDER
                  if name in ('auto', backend) and device_type in ('auto', kind)]
    if not candidates:
        raise ValueError(f'backend {name!r} does not run on device {device!r}')
    return candidates


INT8_GPU_REASON = ('an int8 graph is quantized for ONNX Runtime on the CPU; export fp16 or fp32 '
                   'for the GPU')


def onnx_file_is_int8(model_path: str) -> bool:
    """Tell whether an ONNX file is an int8 graph (its metadata or quantization operators).

    An unreadable file counts as not int8: the backend that loads it raises the clear error.
    """
    from affordance_grounding.inference.backends import is_int8_onnx
    from affordance_grounding.inference.onnx_model import load_onnx_model

    try:
        return is_int8_onnx(load_onnx_model(model_path))
    except ModelFileError:
        return False


def create_backend(backend: str, model_path: str, device: str,
                   options: BackendOptions) -> InferenceBackend:
    """Construct (not load) one backend; TensorRT's module is imported only here."""
    if backend == 'tensorrt':
        from affordance_grounding.inference.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(model_path, device, options)
    if backend == 'torch':
        return TorchBackend(model_path, device, options)
    return OnnxRuntimeBackend(model_path, device, options)


def select_backend(name: str, model_path: str, device: str = 'auto',
                   options: Optional[BackendOptions] = None,
                   environment: Optional[Environment] = None) -> InferenceBackend:
    """Return a loaded backend for a model file: the first candidate that works here.

    Args:
        name: ``auto`` or one of :data:`BACKEND_NAMES`.
        model_path: ``.onnx`` graph, TensorRT ``.engine`` or checkpoint bundle ``.pt``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        options: Backend settings.
        environment: What the machine offers (default: :func:`probe_environment`).

    Raises:
        ModelFileError: If the file is missing, of an unknown type, corrupt or for other
            labels (bundles included).
        BackendUnavailableError: If no candidate can run here; lists every reason.
    """
    candidates = list_candidates(name, device)
    file_kind = classify_model_file(model_path)
    require_file(model_path, f'model file ({file_kind})',
                 f'check the path; {MISSING_ONNX_HINT}')
    environment = environment or probe_environment()
    if device == 'auto' and not environment.cuda_available:
        warn_cpu_fallback()  # the CUDA candidates below are skipped at INFO level
    if (device.startswith('cuda') and not environment.cuda_available
            and 'CUDAExecutionProvider' not in environment.onnxruntime_providers):
        raise BackendUnavailableError(f'device {device!r} requested but there is {NO_CUDA}; '
                                      'use device auto or cpu')
    options = options or BackendOptions()
    skipped = []
    int8 = None  # read only when a GPU candidate could take an ONNX file
    for backend, device_type in candidates:
        reasons = find_skip_reasons(backend, device_type, file_kind, environment)
        if not reasons and file_kind == 'onnx' and device_type == 'cuda':
            int8 = onnx_file_is_int8(model_path) if int8 is None else int8
            if int8:
                reasons = [INT8_GPU_REASON]
        if not reasons:
            target = device if device.startswith(device_type) else device_type
            try:
                chosen = create_backend(backend, model_path, target, options).load()
            except BackendUnavailableError as error:
                reasons = [str(error)]
            else:
                LOGGER.info('selected backend %s for %s', chosen.describe(), model_path)
                return chosen
        line = f'{backend} ({device_type}): {"; ".join(reasons)}'
        LOGGER.info('skipping backend %s', line)
        skipped.append(line)
    raise BackendUnavailableError(f'no backend can run {model_path} on device {device!r}: '
                                  + ' | '.join(skipped))
