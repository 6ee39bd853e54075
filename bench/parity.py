"""Parity of a benchmarked backend against PyTorch fp32 on the CPU, with the exporter's bounds.

The tolerances live in ``training.parity``: the benchmark applies the same numbers the exporter
gates a file on (docs/export.md).
"""

from typing import Dict

from affordance_grounding.inference.io_spec import OUTPUT_NAMES
from bench.reference_structure import reference_test_forward
import numpy as np
import torch
from training.parity import (
    compute_min_map_cosine, FP16_MIN_COSINE, FP32_ATOL, FP32_GPU_ATOL, INT8_MIN_COSINE)

MIN_COSINE = {'fp16': FP16_MIN_COSINE, 'int8': INT8_MIN_COSINE}


def compare_outputs(result, baseline, precision: str, device: str) -> Dict:
    """Parity of one backend's outputs against PyTorch fp32 on the CPU.

    fp32: every output within atol (1e-4 on the CPU, 1e-3 on CUDA); fp16 and int8: per-map
    cosine of ``cam`` and ``affinity`` at least the exporter's bound.
    """
    max_abs, min_cos = {}, {}
    for name in OUTPUT_NAMES:
        got, want = getattr(result, name), getattr(baseline, name)
        max_abs[name] = float(np.abs(got.astype(np.float64) - want).max())
        min_cos[name] = compute_min_map_cosine(got, want)
    if precision in MIN_COSINE:
        bound = MIN_COSINE[precision]
        tolerance = f'min map cosine of cam, affinity >= {bound}'
        ok = all(min_cos[name] >= bound for name in OUTPUT_NAMES[1:])
    else:
        atol = FP32_ATOL if device == 'cpu' else FP32_GPU_ATOL
        tolerance = f'max abs error <= {atol:g}'
        ok = all(error <= atol for error in max_abs.values())
    return {'max_abs_error': max_abs, 'min_map_cosine': min_cos, 'tolerance': tolerance,
            'ok': bool(ok)}


def reference_parity(grounder, clip_model, tokenizer, image: torch.Tensor, label: int,
                     baseline) -> float:
    """Max relative difference of the reference's map 2 and ours (affinity * cam, one class)."""
    reference = reference_test_forward(grounder, clip_model, tokenizer, image, label)[1][0]
    ours = torch.from_numpy(baseline.affinity[0, label] * baseline.cam[0, label])
    return float((ours - reference.cpu()).abs().max() / reference.abs().max().cpu())
