"""Machine description for benchmark JSON files: CPU, cores, GEMM rates, library versions."""

import importlib
import os
import platform
import time
from typing import Any, Dict, Optional, Sequence

from bench.cpuinfo import cpu_model, physical_cores, read_cpu_flags, select_isa_flags
import torch

SGEMM_SIZES = (1024, 2048)


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


def measure_best_sgemm_gflops(sizes: Sequence[int] = SGEMM_SIZES, repeats: int = 10
                              ) -> Dict[str, float]:
    """Measure the CPU roofline: the best float32 GEMM rate over a few square sizes."""
    rates = {str(size): round(measure_sgemm_gflops(size, repeats), 1) for size in sizes}
    return {'best': max(rates.values()), 'by_size': rates}


def measure_gpu_gemm_tflops(dtype: torch.dtype, size: int = 8192, repeats: int = 20,
                            device: str = 'cuda') -> float:
    """Best-of-``repeats`` GEMM rate on the GPU in TFLOP/s (TF32 off for float32)."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        left = torch.randn(size, size, device=device, dtype=dtype)
        right = torch.randn(size, size, device=device, dtype=dtype)
        torch.mm(left, right)
        torch.cuda.synchronize(device)
        best = float('inf')
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(left, right)
            torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return 2 * size ** 3 / best / 1e12


def library_version(module: str) -> Optional[str]:
    """``module.__version__``, or None when it cannot be imported."""
    try:
        return getattr(importlib.import_module(module), '__version__', 'unknown')
    except Exception:  # ImportError, or a broken install raising something else
        return None


def describe_machine(measure_gemm: bool = True) -> Dict[str, Any]:
    """Return the facts a benchmark number depends on.

    Args:
        measure_gemm: Measure the CPU sgemm rate (and the GPU fp32/fp16 GEMM rates when CUDA is
            there); off for quick tests.
    """
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = None
    info: Dict[str, Any] = {
        'cpu': cpu_model(),
        'cores': os.cpu_count(),
        'physical_cores': physical_cores(),
        'torch_threads': torch.get_num_threads(),
        'torch': torch.__version__,
        'python': platform.python_version(),
        'onnxruntime': library_version('onnxruntime'),
        'tensorrt': library_version('tensorrt'),
        'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        'cuda': torch.version.cuda if torch.cuda.is_available() else None,
        'load_average': load,
        'isa_flags': select_isa_flags(read_cpu_flags()),
    }
    if measure_gemm:
        sgemm = measure_best_sgemm_gflops()
        info['sgemm_gflops'] = sgemm['best']
        info['sgemm_gflops_by_size'] = sgemm['by_size']
        if torch.cuda.is_available():
            info['gpu_fp32_gemm_tflops'] = round(measure_gpu_gemm_tflops(torch.float32), 1)
            info['gpu_fp16_gemm_tflops'] = round(measure_gpu_gemm_tflops(torch.float16), 1)
    return info
