"""Per-frame inference latency of every backend on this machine, next to the reference structure.

    .venv/bin/python -m bench.inference [--repeats 10] [--out outputs/bench/inference.json]
        [--batches 1 8] [--cuda-batches 1 8 64] [--config MODEL.yaml] [--seed 0]

Builds the full-size architecture with random weights (or ``--config``), exports it to ONNX once
(cached under ``outputs/bench/cache`` by seed and weight fingerprint) and times, through the
real backend classes, every backend this machine can run: PyTorch eager fp32 and ONNX Runtime
on the CPU; on CUDA PyTorch fp32/fp16 with and without CUDA graphs, ONNX Runtime CUDA and
TensorRT fp16. Rows that cannot run are listed with the reason. The reference test-time
structure (bench/reference_structure.py) runs in the same rounds on each device.

Calls are interleaved (round r times every row once) so that load from other jobs on a shared
machine hits all rows alike. The CPU roofline is the best sgemm rate seen: best-of before the
rounds, or the best of a 1024x1024 sgemm probe that runs in the same rounds (its median gives a
second, same-load fraction). Every backend's outputs are compared with PyTorch fp32 on the CPU
(docs/export.md, "Parity tolerances").
"""

import argparse
from dataclasses import dataclass
import hashlib
import logging
import os
from pathlib import Path
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from affordance_grounding.config import load_model_config, ModelConfig
from affordance_grounding.model.backbones import (
    build_clip_tokenizer, ClipDenseEncoder, DinoKeyEncoder, load_clip_model, load_dino_model)
from affordance_grounding.model.factory import build_prompt_tables
from affordance_grounding.model.grounding import AffordanceGrounder
from affordance_grounding.model.head import AffordanceHead
from affordance_grounding.runtime.backends import (
    BackendOptions, InferenceBackend, OnnxRuntimeBackend, TorchBackend)
from affordance_grounding.runtime.graph import GroundingGraph
from affordance_grounding.runtime.io_spec import BackendUnavailableError, OUTPUT_NAMES
from bench.machine import describe_machine
from bench.reference_structure import reference_test_forward
from bench.timing import load_average, summarize, time_interleaved, write_report
import numpy as np
import torch
from training.export import compute_min_map_cosine

FLOP_PER_FRAME = 43.2e9  # 21.6 GMAC per 224x224 frame, full size (docs/method.md, "Cost")
DEFAULT_CACHE = 'outputs/bench/cache'
SGEMM_PROBE_SIZE = 1024
PARITY_BATCH = 2
# docs/export.md: ONNX vs torch fp32 atol 1e-4; GPU fp32 1e-3 with TF32 off; fp16 map cosine.
FP32_CPU_ATOL = 1e-4
FP32_GPU_ATOL = 1e-3
FP16_MIN_COSINE = 0.999
GPU_TARGET_B1_MS = 3.0
GPU_TARGET_B64_FPS = 2000.0
CPU_TARGET_ROOFLINE = 0.65
CPU_TARGET_SPEEDUP = 1.5
REFERENCE = 'reference'


@dataclass(frozen=True)
class RowSpec:
    """One backend configuration to time.

    Attributes:
        label: Name in the table.
        backend: ``torch``, ``onnxruntime``, ``tensorrt`` or ``reference``.
        device: ``cpu`` or ``cuda``.
        precision: ``fp32`` or ``fp16``.
        cuda_graphs: PyTorch CUDA: replay captured graphs.
        pinned_outputs: PyTorch CUDA: page-locked host copies of the outputs.
    """

    label: str
    backend: str
    device: str
    precision: str = 'fp32'
    cuda_graphs: bool = False
    pinned_outputs: bool = True


CPU_ROWS = (
    RowSpec('torch eager fp32', 'torch', 'cpu'),
    RowSpec('onnxruntime cpu fp32', 'onnxruntime', 'cpu'),
)
CUDA_ROWS = (
    RowSpec('torch cuda fp32', 'torch', 'cuda'),
    RowSpec('torch cuda fp32 + graphs', 'torch', 'cuda', cuda_graphs=True),
    RowSpec('torch cuda fp16', 'torch', 'cuda', 'fp16'),
    RowSpec('torch cuda fp16 + graphs', 'torch', 'cuda', 'fp16', cuda_graphs=True),
    RowSpec('torch cuda fp16 + graphs, pageable copies', 'torch', 'cuda', 'fp16',
            cuda_graphs=True, pinned_outputs=False),
    RowSpec('onnxruntime cuda fp32', 'onnxruntime', 'cuda'),
    RowSpec('tensorrt fp16', 'tensorrt', 'cuda', 'fp16'),
)


@dataclass
class Probe:
    """What this machine offers: CUDA, ONNX Runtime providers, TensorRT."""

    cuda: bool
    onnxruntime_providers: Tuple[str, ...]
    tensorrt_problem: Optional[str]

    @classmethod
    def detect(cls) -> 'Probe':
        """Inspect the machine (imports onnxruntime and tensorrt when present)."""
        try:
            import onnxruntime
            providers = tuple(onnxruntime.get_available_providers())
        except ImportError:
            providers = ()
        try:
            import tensorrt  # noqa: F401
            problem = None
        except Exception as error:  # ImportError, or a broken install
            problem = f'tensorrt does not import ({type(error).__name__}: {error})'
        return cls(cuda=torch.cuda.is_available(), onnxruntime_providers=providers,
                   tensorrt_problem=problem)


def skip_reason(spec: RowSpec, probe: Probe) -> Optional[str]:
    """Why ``spec`` cannot run on this machine, or None when it can."""
    if spec.device == 'cuda' and not probe.cuda:
        return 'no CUDA device (torch.cuda.is_available() is False)'
    if spec.backend == 'onnxruntime':
        if not probe.onnxruntime_providers:
            return 'onnxruntime is not installed'
        provider = 'CUDAExecutionProvider' if spec.device == 'cuda' else 'CPUExecutionProvider'
        if provider not in probe.onnxruntime_providers:
            return f'onnxruntime has no {provider} (providers: {probe.onnxruntime_providers})'
    if spec.backend == 'tensorrt' and probe.tensorrt_problem:
        return probe.tensorrt_problem
    return None


def build_model(config: Optional[ModelConfig] = None, seed: int = 0):
    """Return (grounder, full CLIP model, tokenizer) with random weights.

    Args:
        config: Architecture; None is the full-size SelectiveCL model with random backbones.
        seed: Seed of the random weights.
    """
    torch.manual_seed(seed)
    config = config or ModelConfig(clip_weights=None, dino_weights=None)
    clip_model = load_clip_model(config)
    item_text = build_prompt_tables(clip_model, config)['item']
    dino = DinoKeyEncoder(load_dino_model(config))
    head = AffordanceHead(dino.width, len(config.labels), config.head_hidden_ratio).eval()
    grounder = AffordanceGrounder(config, ClipDenseEncoder(clip_model.visual), dino, head,
                                  item_text).eval()
    return grounder, clip_model, build_clip_tokenizer(config)


def build_full_size(seed: int = 0):
    """Full-size SelectiveCL architecture with random weights, plus the full CLIP model."""
    return build_model(None, seed)


def weight_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over every state-dict entry (name, dtype, shape, bytes), first 16 hex digits."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{value.dtype}:{tuple(value.shape)}'.encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def ensure_onnx(grounder: AffordanceGrounder, cache_dir: str, seed: int,
                precision: str = 'fp32') -> Tuple[Path, float]:
    """Export ``grounder`` once per (seed, weights, precision); returns (path, export seconds).

    The export is checked against PyTorch by the exporter itself (atol 1e-4 for fp32). A cached
    file is reused when its name (seed and weight fingerprint) matches; 0 seconds then.
    """
    from training.export import export_onnx, ExportOptions

    path = Path(cache_dir) / f'grounder_seed{seed}_{weight_fingerprint(grounder)}_{precision}.onnx'
    if path.is_file():
        return path, 0.0
    started = time.perf_counter()
    print(f'exporting {path} (about a minute at full size) ...', flush=True)
    export_onnx(grounder, str(path), ExportOptions(precision=precision))
    return path, time.perf_counter() - started


def count_flops_per_frame(grounder: AffordanceGrounder) -> float:
    """Count the FLOPs of one frame through the inference graph (FlopCounterMode).

    The fused multi-head-attention fast path of open_clip's blocks is turned off while
    counting: FlopCounterMode does not see inside it.
    """
    from torch.utils.flop_counter import FlopCounterMode

    graph = GroundingGraph(grounder).eval()
    size = grounder.config.image_size
    device = next(grounder.parameters()).device
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            graph(torch.zeros(1, 3, size, size, device=device))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return float(counter.get_total_flops())


def create_backend(spec: RowSpec, grounder: AffordanceGrounder, onnx_paths: Dict[str, Path],
                   threads: Optional[int]) -> InferenceBackend:
    """Construct and load the backend of one row."""
    options = BackendOptions(precision=spec.precision, use_cuda_graphs=spec.cuda_graphs,
                             pinned_outputs=spec.pinned_outputs, intra_op_threads=threads)
    if spec.backend == 'torch':
        return TorchBackend(None, spec.device, options, grounder=grounder).load()
    if spec.backend == 'onnxruntime':
        return OnnxRuntimeBackend(str(onnx_paths['fp32']), spec.device, options).load()
    if spec.backend == 'tensorrt':
        from affordance_grounding.runtime.tensorrt_backend import TensorRTBackend

        options = BackendOptions(precision=spec.precision, max_batch=64)
        return TensorRTBackend(str(onnx_paths['fp16']), spec.device, options).load()
    raise ValueError(f'unknown backend {spec.backend!r}')


def compare_outputs(result, baseline, spec: RowSpec) -> Dict:
    """Parity of one backend's outputs against PyTorch fp32 on the CPU.

    fp32: every output within atol (1e-4 on the CPU, 1e-3 on CUDA); fp16: per-map cosine of
    ``cam`` and ``affinity`` at least 0.999 (docs/export.md).
    """
    max_abs, min_cos = {}, {}
    for name in OUTPUT_NAMES:
        got, want = getattr(result, name), getattr(baseline, name)
        max_abs[name] = float(np.abs(got.astype(np.float64) - want).max())
        min_cos[name] = compute_min_map_cosine(got, want)
    if spec.precision == 'fp16':
        tolerance = f'min map cosine of cam, affinity >= {FP16_MIN_COSINE}'
        ok = all(min_cos[name] >= FP16_MIN_COSINE for name in OUTPUT_NAMES[1:])
    else:
        atol = FP32_CPU_ATOL if spec.device == 'cpu' else FP32_GPU_ATOL
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


def make_sgemm_probe(size: int = SGEMM_PROBE_SIZE, calls: int = 4) -> Tuple[Callable, float]:
    """Return a CPU sgemm workload for the timing rounds and its FLOPs per call."""
    left, right = torch.randn(size, size), torch.randn(size, size)

    def probe():
        for _ in range(calls):
            torch.mm(left, right)
    return probe, 2.0 * size ** 3 * calls


def run(repeats: int = 10, batches: Sequence[int] = (1, 8),
        cuda_batches: Sequence[int] = (1, 8, 64), config: Optional[ModelConfig] = None,
        seed: int = 0, cache_dir: str = DEFAULT_CACHE, threads: Optional[int] = None,
        measure_gemm: bool = True, probe: Optional[Probe] = None, cpu: bool = True) -> dict:
    """Measure every row; returns the JSON-ready report (``cpu=False``: CUDA rows only)."""
    started = time.perf_counter()
    probe = probe or Probe.detect()
    if threads:  # PyTorch rows, the reference and the sgemm roofline use as many threads
        torch.set_num_threads(threads)
    machine = describe_machine(measure_gemm=measure_gemm)
    if probe.cuda:  # fp32 means fp32: no TF32 in matmuls or convolutions
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    grounder, clip_model, tokenizer = build_model(config, seed)
    full_size = config is None
    flops_counted = count_flops_per_frame(grounder)
    flop_per_frame = FLOP_PER_FRAME if full_size else flops_counted
    label = grounder.labels.index('hold') if 'hold' in grounder.labels else 0
    parity_images = torch.randn(PARITY_BATCH, 3, grounder.config.image_size,
                                grounder.config.image_size,
                                generator=torch.Generator().manual_seed(seed + 1))
    specs = list(CPU_ROWS) + list(CUDA_ROWS)
    results: List[dict] = []
    skipped: List[dict] = []
    planned = []
    for spec in specs:
        reason = skip_reason(spec, probe)
        if spec.device == 'cpu' and not cpu:
            reason = 'CPU rows not asked for (--no-cpu)'
        if reason:
            skipped.append({'backend': spec.label, 'device': spec.device, 'reason': reason})
        else:
            planned.append(spec)
    onnx_paths: Dict[str, Path] = {}
    export_seconds = {}
    for precision, needed in (('fp32', any(s.backend == 'onnxruntime' for s in planned)),
                              ('fp16', any(s.backend == 'tensorrt' for s in planned))):
        if needed:
            onnx_paths[precision], export_seconds[precision] = ensure_onnx(
                grounder, cache_dir, seed, precision)
    baseline = TorchBackend(None, 'cpu', grounder=grounder).load().infer(parity_images)
    reference_difference = reference_parity(grounder, clip_model, tokenizer,
                                            parity_images[:1], label, baseline)
    sgemm_in_rounds = {}
    for device, device_batches in (('cpu', batches), ('cuda', cuda_batches)):
        device_specs = [spec for spec in planned if spec.device == device]
        if not device_specs:
            continue
        if device == 'cuda':
            clip_model.cuda()  # the reference structure runs on the same device (shares visual)
        loaded = []
        for spec in device_specs:
            try:
                loaded.append((spec, create_backend(spec, grounder, onnx_paths, threads)))
            except BackendUnavailableError as error:
                skipped.append({'backend': spec.label, 'device': device, 'reason': str(error)})
            except Exception as error:  # report and go on with the other rows
                skipped.append({'backend': spec.label, 'device': device,
                                'reason': f'failed to load: {type(error).__name__}: {error}'})
                traceback.print_exc()
        parity = {}
        for spec, backend in list(loaded):
            try:
                parity[spec.label] = compare_outputs(backend.infer(parity_images), baseline, spec)
            except Exception as error:
                skipped.append({'backend': spec.label, 'device': device,
                                'reason': f'failed to run: {type(error).__name__}: {error}'})
                traceback.print_exc()
                loaded.remove((spec, backend))
        try:  # one failure (out of memory, a driver error) must not lose the other devices
            rows = time_device(device, device_batches, loaded, grounder, clip_model,
                               tokenizer, label, repeats)
            sgemm_in_rounds.update(rows.pop('sgemm', {}))
            for key, stats in rows.items():
                spec, batch = key
                if spec.backend == REFERENCE:  # one image a call, in every batch's rounds
                    row = make_row(spec, 1, stats, None)
                    if batch != 1:
                        row.update(in_rounds_of_batch=batch,
                                   backend=f'{spec.label} (in the batch-{batch} rounds)')
                else:
                    row = make_row(spec, batch, stats, parity.get(spec.label))
                results.append(row)
            if device == 'cuda':
                results.extend(measure_device_only(loaded, device_batches, repeats))
        except Exception as error:
            skipped.append({'backend': f'timing on {device}', 'device': device,
                            'reason': f'failed: {type(error).__name__}: {error}'})
            traceback.print_exc()
        for _, backend in loaded:
            backend.close()
    add_derived_numbers(results, machine, flop_per_frame, sgemm_in_rounds)
    report = {
        'machine': machine,
        'model': 'full-size (random weights)' if full_size else 'config (random weights)',
        'seed': seed, 'image_size': grounder.config.image_size,
        'classes': len(grounder.labels),
        'flop_per_frame': flop_per_frame, 'flop_per_frame_counted': flops_counted,
        'results': results, 'skipped': skipped,
        'sgemm_in_rounds_gflops': sgemm_in_rounds,
        'reference_parity_max_relative_difference': reference_difference,
        'onnx': {precision: str(path) for precision, path in onnx_paths.items()},
        'export_seconds': export_seconds,
        'repeats': repeats, 'threads': threads, 'load_average_end': load_average(),
        'seconds': round(time.perf_counter() - started, 1),
    }
    report['targets'] = evaluate_targets(report)
    return report


def time_device(device: str, batches: Sequence[int], loaded, grounder, clip_model, tokenizer,
                label: int, repeats: int) -> Dict:
    """Interleaved rounds per batch size; returns {(spec, batch): stats, 'sgemm': {...}}."""
    out: Dict = {}
    sync = torch.cuda.synchronize if device == 'cuda' else None
    size = grounder.config.image_size
    reference_spec = RowSpec('reference structure fp32', REFERENCE, device)
    sgemm_probe, sgemm_flops = make_sgemm_probe()
    for batch in batches:
        images = torch.randn(batch, 3, size, size).numpy()
        functions = {spec.label: (lambda b=backend: b.infer(images)) for spec, backend in loaded}
        image = torch.from_numpy(images[:1]).to(device)  # the reference takes one image
        functions[reference_spec.label] = (lambda: reference_test_forward(
            grounder, clip_model, tokenizer, image, label))
        if device == 'cpu':
            functions['sgemm'] = sgemm_probe
        rounds = repeats if batch == 1 or device == 'cuda' else max(3, repeats // 2)
        warmup = 3 if device == 'cuda' else (2 if batch == 1 else 1)
        print(f'{device}: batch {batch}, {rounds} interleaved rounds of '
              f'{len(functions)} functions ...', flush=True)
        samples = time_interleaved(functions, rounds, warmup, sync)
        for spec, _ in loaded:
            out[(spec, batch)] = summarize(samples[spec.label])
        out[(reference_spec, batch)] = summarize(samples[reference_spec.label])
        if 'sgemm' in samples:
            stats = summarize(samples['sgemm'])
            out.setdefault('sgemm', {})[f'batch {batch}'] = {
                'median': round(sgemm_flops / stats['median_s'] / 1e9, 1),
                'best': round(sgemm_flops / stats['min_s'] / 1e9, 1)}
    return out


def measure_device_only(loaded, batches: Sequence[int], repeats: int) -> List[dict]:
    """Time the PyTorch CUDA rows again with outputs left on the GPU (no host copies)."""
    rows = []
    for spec, backend in loaded:
        if spec.backend != 'torch' or not spec.pinned_outputs:  # same work as pinned
            continue
        size = backend.metadata.image_size
        for batch in batches:
            images = torch.randn(batch, 3, size, size, device=backend.device)
            samples = time_interleaved({'x': lambda: backend.infer_on_device(images)}, repeats,
                                       3, torch.cuda.synchronize)['x']
            device_spec = RowSpec(spec.label + ' (outputs on GPU)', spec.backend, spec.device,
                                  spec.precision, spec.cuda_graphs)
            rows.append(make_row(device_spec, batch, summarize(samples), None))
    return rows


def make_row(spec: RowSpec, batch: int, stats: Dict, parity: Optional[Dict]) -> dict:
    """One JSON result row."""
    seconds = stats['median_s'] / batch
    return {'backend': spec.label, 'kind': spec.backend, 'device': spec.device,
            'precision': spec.precision, 'cuda_graphs': spec.cuda_graphs, 'batch': batch,
            'ms_per_frame': round(seconds * 1e3, 3), 'frames_per_s': round(1.0 / seconds, 1),
            'best_ms_per_frame': round(stats['min_s'] / batch * 1e3, 3),
            'spread': round(stats['spread'], 3), 'samples': stats['count'], 'parity': parity}


def add_derived_numbers(results: List[dict], machine: dict, flop_per_frame: float,
                        sgemm_in_rounds: Dict[str, Dict[str, float]]) -> None:
    """Add roofline fractions and speed-ups over the reference of the same device (in place).

    CPU rows: the median frame against the best sgemm rate seen, before or during the rounds
    (``roofline_fraction``), the median frame against the median sgemm rate of the same rounds
    (``roofline_fraction_same_load``) and the fastest frame against the best sgemm rate
    (``roofline_fraction_best``). CUDA rows: against
    the measured GPU GEMM rate of their precision.
    """
    reference = {(row['device'], row.get('in_rounds_of_batch', 1)): row['ms_per_frame']
                 for row in results if row['kind'] == REFERENCE}
    for row in results:
        seconds = row['ms_per_frame'] / 1e3
        if row['device'] == 'cpu':
            in_rounds = sgemm_in_rounds.get(
                f"batch {row.get('in_rounds_of_batch', row['batch'])}", {})
            peak = max(machine.get('sgemm_gflops') or 0, in_rounds.get('best', 0)) or None
            row['roofline_gflops'] = peak
            row['roofline_fraction'] = _fraction(flop_per_frame, seconds, peak)
            row['roofline_fraction_same_load'] = _fraction(flop_per_frame, seconds,
                                                           in_rounds.get('median'))
            row['roofline_fraction_best'] = _fraction(  # fastest frame vs fastest sgemm
                flop_per_frame, row['best_ms_per_frame'] / 1e3, peak)
        else:
            key = 'gpu_fp16_gemm_tflops' if row['precision'] == 'fp16' else 'gpu_fp32_gemm_tflops'
            rate = machine.get(key)
            row['roofline_gflops'] = rate * 1e3 if rate else None
            row['roofline_fraction'] = _fraction(flop_per_frame, seconds, row['roofline_gflops'])
        base = reference.get((row['device'], row.get('in_rounds_of_batch', row['batch'])),
                             reference.get((row['device'], 1)))
        row['speedup_vs_reference'] = round(base / row['ms_per_frame'], 2) if base else None


def _fraction(flop: float, seconds: float, gflops: Optional[float]) -> Optional[float]:
    """Roofline time / measured time, or None without a rate."""
    if not gflops:
        return None
    return round(flop / (gflops * 1e9) / seconds, 3)


def evaluate_targets(report: dict) -> List[dict]:
    """List the issue's targets next to the measured values (those this machine can check)."""
    rows = report['results']
    targets = []
    cpu = [row for row in rows if row['device'] == 'cpu' and row['kind'] != REFERENCE
           and row['batch'] == 1 and 'in_rounds_of_batch' not in row]
    if cpu:
        best = min(cpu, key=lambda row: row['ms_per_frame'])
        targets.append(_target(f"CPU roofline fraction, batch 1 ({best['backend']})",
                               f'>= {CPU_TARGET_ROOFLINE}', best['roofline_fraction'],
                               CPU_TARGET_ROOFLINE))
        targets.append(_target(f"CPU roofline fraction at the same load ({best['backend']})",
                               f'>= {CPU_TARGET_ROOFLINE}', best['roofline_fraction_same_load'],
                               CPU_TARGET_ROOFLINE))
        targets.append(_target(f"CPU roofline fraction, fastest frame ({best['backend']})",
                               f'>= {CPU_TARGET_ROOFLINE}', best['roofline_fraction_best'],
                               CPU_TARGET_ROOFLINE))
        targets.append(_target(f"CPU speed-up vs reference, batch 1 ({best['backend']})",
                               f'>= {CPU_TARGET_SPEEDUP}', best['speedup_vs_reference'],
                               CPU_TARGET_SPEEDUP))
    for label in ('torch cuda fp16 + graphs', 'torch cuda fp16 + graphs (outputs on GPU)'):
        graphs = {row['batch']: row for row in rows if row['backend'] == label}
        if 1 in graphs:
            row = graphs[1]
            targets.append({'target': f'{label}, batch 1 ms/frame',
                            'required': f'<= {GPU_TARGET_B1_MS}',
                            'measured': row['ms_per_frame'],
                            'holds': row['ms_per_frame'] <= GPU_TARGET_B1_MS})
            if row['parity']:
                targets.append({'target': f'{label} heatmap parity vs fp32',
                                'required': row['parity']['tolerance'],
                                'measured': row['parity']['min_map_cosine'],
                                'holds': row['parity']['ok']})
        if 64 in graphs:
            row = graphs[64]
            targets.append({'target': f'{label}, batch 64 frames/s',
                            'required': f'>= {GPU_TARGET_B64_FPS}',
                            'measured': row['frames_per_s'],
                            'holds': row['frames_per_s'] >= GPU_TARGET_B64_FPS})
    return targets


def _target(name: str, required: str, measured: Optional[float], bound: float) -> dict:
    """Return a lower-bound target."""
    return {'target': name, 'required': required, 'measured': measured,
            'holds': None if measured is None else measured >= bound}


def format_table(report: dict) -> str:
    """Return the results as a fixed-width table."""
    machine = report['machine']
    lines = [f"{machine['cpu']} ({machine['cores']} cores), sgemm best-of "
             f"{machine.get('sgemm_gflops')} GFLOP/s, in rounds {report['sgemm_in_rounds_gflops']}"
             f", torch {machine['torch']}, onnxruntime {machine['onnxruntime']}, "
             f"tensorrt {machine['tensorrt']}, GPU {machine['gpu']}, "
             f"load {machine['load_average']} -> {report['load_average_end']}",
             f"{'backend':50s} {'dev':4s} {'batch':>5s} {'ms/frame':>9s} {'frames/s':>9s} "
             f"{'spread':>6s} {'roofline':>8s} {'same':>6s} {'best':>6s} {'vs ref':>7s}  parity"]
    for row in report['results']:
        parity = row['parity']
        if parity is None:
            parity_text = ''
        else:
            parity_text = ('ok' if parity['ok'] else 'FAIL') + ' max abs ' + ', '.join(
                f'{name} {error:.1e}' for name, error in parity['max_abs_error'].items())
        lines.append(
            f"{row['backend']:50s} {row['device']:4s} {row['batch']:5d} "
            f"{row['ms_per_frame']:9.2f} {row['frames_per_s']:9.1f} {row['spread']:6.0%} "
            f"{_percent(row.get('roofline_fraction')):>8s} "
            f"{_percent(row.get('roofline_fraction_same_load')):>6s} "
            f"{_percent(row.get('roofline_fraction_best')):>6s} "
            f"{_ratio(row.get('speedup_vs_reference')):>7s}  {parity_text}")
    for skip in report['skipped']:
        lines.append(f"skipped: {skip['backend']} ({skip['device']}): {skip['reason']}")
    lines.append('reference vs ours (affinity * cam, one class): max relative difference '
                 f"{report['reference_parity_max_relative_difference']:.1e}")
    for target in report['targets']:
        verdict = {True: 'holds', False: 'NOT MET', None: 'n/a'}[target['holds']]
        lines.append(f"target {target['target']}: {target['required']}, measured "
                     f"{target['measured']} -> {verdict}")
    return '\n'.join(lines)


def _percent(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.0%}'


def _ratio(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}x'


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark, print the table and write the JSON file."""
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=10,
                        help='interleaved rounds at batch 1 (half as many at CPU batch 8)')
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8], help='CPU batches')
    parser.add_argument('--cuda-batches', type=int, nargs='+', default=[1, 8, 64])
    parser.add_argument('--no-cpu', action='store_true', help='CUDA rows only (GPU suite)')
    parser.add_argument('--config', help='model config YAML (default: full size, random)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int,
                        help='intra-op threads of every CPU row (PyTorch, ONNX Runtime, the '
                             'reference) and of the sgemm roofline (default: all cores)')
    parser.add_argument('--cache-dir', default=DEFAULT_CACHE, help='exported ONNX cache')
    parser.add_argument('--wait-for-load', type=float, metavar='LOAD',
                        help='first wait (at most --max-wait s) until the 1-minute load '
                             'average is at most LOAD (shared machines)')
    parser.add_argument('--max-wait', type=float, default=900)
    parser.add_argument('--out', default='outputs/bench/inference.json')
    args = parser.parse_args(argv)
    config = load_model_config(args.config) if args.config else None
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    waited = wait_for_load(args.wait_for_load, args.max_wait) if args.wait_for_load else 0.0
    report = run(args.repeats, args.batches, args.cuda_batches, config, args.seed,
                 args.cache_dir, args.threads, cpu=not args.no_cpu)
    report['waited_for_load_s'] = waited
    print(format_table(report))
    write_report(report, args.out)
    return 0


def wait_for_load(threshold: float, max_wait: float, poll_s: float = 15.0) -> float:
    """Sleep until the 1-minute load average is at most ``threshold``; returns seconds waited."""
    started = time.perf_counter()
    while (time.perf_counter() - started < max_wait
           and (load_average() or [0.0])[0] > threshold):
        time.sleep(poll_s)
    waited = time.perf_counter() - started
    print(f'waited {waited:.0f} s for load <= {threshold}: now {load_average()}', flush=True)
    return round(waited, 1)


if __name__ == '__main__':
    sys.exit(main())
