"""Machine description for benchmark JSON files: CPU, cores, sgemm rate, library versions."""

import os
import platform
import time
from typing import Any, Dict

import torch


def measure_sgemm_gflops(size: int = 1024, repeats: int = 20) -> float:
    """Best-of-``repeats`` float32 matrix multiply rate with torch's BLAS, in GFLOP/s."""
    left = torch.randn(size, size)
    right = torch.randn(size, size)
    torch.mm(left, right)  # warm-up
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(left, right)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open('/proc/cpuinfo') as stream:
            for line in stream:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def describe_machine() -> Dict[str, Any]:
    """Return the facts a benchmark number depends on."""
    info: Dict[str, Any] = {
        'cpu': cpu_model(),
        'cores': os.cpu_count(),
        'torch_threads': torch.get_num_threads(),
        'torch': torch.__version__,
        'python': platform.python_version(),
        'sgemm_gflops': round(measure_sgemm_gflops(), 1),
        'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import onnxruntime
        info['onnxruntime'] = onnxruntime.__version__
    except ImportError:
        info['onnxruntime'] = None
    return info
