"""How close an exported graph must be to PyTorch fp32: the tolerances and the maths that checks.

One home for the bounds that the exporter (``training.export``), the text-tower export, the
int8 gate (``training.quantize``) and the benchmarks (``bench.parity``) apply, so that a file
the exporter accepts and a benchmark row marked ``ok`` mean the same thing (docs/export.md,
"Parity tolerances"). Pure numpy: importing it loads neither torch nor ONNX Runtime.
"""

from typing import Dict, List

from affordance_grounding.inference.io_spec import OUTPUT_NAMES
import numpy as np

# Parity tolerances against PyTorch fp32 on the CPU (docs/export.md), used by the exporter and
# by bench.inference: fp32 max abs error on the CPU and on CUDA (TF32 off), fp16 per-map cosine.
FP32_ATOL = 1e-4
FP32_GPU_ATOL = 1e-3
FP16_MIN_COSINE = 0.999
# Smallest per-map cosine (cam, affinity) of int8 vs fp32, chosen from measurements
# (docs/benchmarks.md, INT8): the lowest seen was 0.9939 (full-size random weights, static QDQ,
# affinity; dynamic: 0.9981; the trained synthetic model: >= 0.9997), so 0.99 passes every
# measured export with a margin, while maps that merely look alike (two independent uniform
# [0, 1] maps: 0.75 expected) fail.
INT8_MIN_COSINE = 0.99
COSINE_GATED_OUTPUTS = OUTPUT_NAMES[1:]  # cam, affinity: the maps before the min-max


class ExportError(RuntimeError):
    """The exported graph failed a check (checker, interface, TensorRT constraints, parity)."""


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


def find_parity_failures(max_abs_error: Dict[int, Dict[str, float]],
                         min_cosine: Dict[int, Dict[str, float]], precision: str,
                         atol: float = FP32_ATOL,
                         cosine_bound: float = FP16_MIN_COSINE) -> List[str]:
    """Return a line per output past tolerance (fp32: atol; fp16: cosine of cam/affinity).

    Args:
        max_abs_error: {batch: {output: max |onnx - torch|}}.
        min_cosine: {batch: {output: smallest per-map cosine}}.
        precision: ``fp32`` is held to ``atol``; anything else to ``cosine_bound``.
        atol: Largest accepted absolute error (fp32).
        cosine_bound: Smallest accepted per-map cosine of ``cam`` and ``affinity``.
    """
    failures = []
    for batch in max_abs_error:
        if precision == 'fp32':
            failures += [f'batch {batch} {name}: max abs error {error:.3g} > {atol:g}'
                         for name, error in max_abs_error[batch].items()
                         if not error <= atol]  # NaN never passes
        else:
            failures += [f'batch {batch} {name}: min map cosine {cosine:.6f} < {cosine_bound}'
                         for name, cosine in min_cosine[batch].items()
                         if name in COSINE_GATED_OUTPUTS and not cosine >= cosine_bound]
    return failures
