"""The CPU's compute peak for the roofline: measured GEMM rates and a theoretical bound.

A roofline fraction above 100% means the reference rate is wrong, so the peak is the best of:

* torch sgemm (MKL; on AMD CPUs it may not use AVX-512),
* an ONNX Runtime MatMul microbenchmark (MLAS, the library our fastest CPU rows run on),
* a theoretical peak from the vector width, the FMA units and the clock, when they can be read.

The derivation of the theoretical number is returned as text, with every assumption in it. The
int8 rows get their own peak the same way (ONNX Runtime MatMulInteger, VNNI arithmetic).
"""

import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

from bench.cpuinfo import (
    physical_cores, read_cpu_flags, read_cpu_identity, read_max_clock_mhz, select_isa_flags)
import numpy as np

GEMM_SIZES = (1024, 2048)


def fma_units_per_core(identity: Dict[str, object], vector_bits: int) -> Tuple[int, int, str]:
    """Return (FMA pipes, bits each pipe processes per cycle, why) for a known core.

    No flag says how many FMA pipes a core has or how wide they are, so this is a short table
    of the cores these machines come with; anything else assumes two full-width pipes, the
    common case since Haswell/Zen, and says so.
    """
    vendor, family, model = identity.get('vendor'), identity.get('family'), identity.get('model')
    if vendor == 'AuthenticAMD' and family == 0x19 and vector_bits == 512:
        return 2, 256, 'Zen 4 (AMD family 19h with AVX-512): 2 FMA pipes, 512-bit ops split in two'
    if vendor == 'AuthenticAMD' and family == 0x19:
        return 2, 256, 'Zen 3 (AMD family 19h): 2 x 256-bit FMA pipes'
    mobile = isinstance(model, int) and 0x20 <= model < 0x30
    if vendor == 'AuthenticAMD' and family == 0x1A and mobile:
        return 2, 256, 'Zen 5 mobile (AMD family 1Ah model 2xh): 256-bit data path'
    if vendor == 'AuthenticAMD' and family == 0x1A:
        return 2, vector_bits, 'Zen 5 (AMD family 1Ah): 2 full-width (512-bit) FMA pipes'
    return 2, vector_bits, f'assumed 2 x {vector_bits}-bit FMA pipes (core not in the table)'


def theoretical_peak(flags: Sequence[str], identity: Dict[str, object], cores: int,
                     max_clock_mhz: Optional[float] = None) -> Dict[str, object]:
    """fp32 and int8 peak of ``cores`` cores from vector width, FMA pipes and clock.

    fp32: lanes (width / 32) x 2 (multiply and add) x pipes x clock x cores. int8 with VNNI:
    4 times that (one ``vpdpbusd`` does 4 multiply-adds per 32-bit lane), assuming VNNI issues
    on the FMA pipes; without VNNI, 2 times (``vpmaddubsw`` + ``vpmaddwd`` pairs).

    Returns:
        ``fp32_gflops``, ``int8_gops`` (None without a clock), ``clock_mhz``, ``clock_source``
        and ``derivation`` (one line of text with every factor).
    """
    flag_set = set(flags)
    vector_bits = 512 if 'avx512f' in flag_set else 256 if 'fma' in flag_set else 128
    pipes, pipe_bits, why = fma_units_per_core(identity, vector_bits)
    flop_per_cycle = pipe_bits // 32 * 2 * pipes
    vnni = bool(flag_set & {'avx512_vnni', 'avx_vnni', 'avx512vnni'})
    int8_factor = 4 if vnni else 2
    if max_clock_mhz:
        clock, source = max_clock_mhz, 'cpufreq cpuinfo_max_freq'
    elif identity.get('cpuinfo_mhz'):
        clock = float(identity['cpuinfo_mhz'])
        source = ('/proc/cpuinfo cpu MHz (the nominal clock in a VM; a boost clock above it '
                  'is not readable, so a measured rate may exceed this bound)')
    else:
        clock, source = None, 'no clock readable'
    fp32 = clock * 1e6 * flop_per_cycle * cores / 1e9 if clock else None
    int8 = fp32 * int8_factor if fp32 else None
    derivation = (f'{vector_bits}-bit vectors ({"avx512f" if vector_bits == 512 else "avx2/fma"}'
                  f'); {why}: {pipe_bits // 32} fp32 lanes x 2 (FMA) x {pipes} pipes = '
                  f'{flop_per_cycle} FLOP/cycle/core; x {cores} cores x '
                  f'{"?" if clock is None else f"{clock:.0f}"} MHz ({source}) = '
                  f'{"?" if fp32 is None else f"{fp32:.1f}"} GFLOP/s fp32; int8 x{int8_factor} '
                  f'({"VNNI" if vnni else "no VNNI"}) = {"?" if int8 is None else f"{int8:.1f}"}'
                  f' GOP/s')
    return {'fp32_gflops': None if fp32 is None else round(fp32, 1),
            'int8_gops': None if int8 is None else round(int8, 1),
            'flop_per_cycle_per_core': flop_per_cycle, 'int8_factor': int8_factor,
            'vector_bits': vector_bits,
            'cores': cores, 'clock_mhz': clock, 'clock_source': source, 'vnni': vnni,
            'derivation': derivation}


def _matmul_model(size: int, integer: bool):
    """One MatMul (or MatMulInteger, uint8 x int8) with a constant right-hand side."""
    from onnx import helper, numpy_helper, TensorProto

    rng = np.random.default_rng(0)
    if integer:
        weight = numpy_helper.from_array(
            rng.integers(-127, 127, (size, size), dtype=np.int8), 'b')
        node = helper.make_node('MatMulInteger', ['a', 'b'], ['c'])
        inputs = [helper.make_tensor_value_info('a', TensorProto.UINT8, [size, size])]
        outputs = [helper.make_tensor_value_info('c', TensorProto.INT32, [size, size])]
    else:
        weight = numpy_helper.from_array(rng.standard_normal((size, size), np.float32), 'b')
        node = helper.make_node('MatMul', ['a', 'b'], ['c'])
        inputs = [helper.make_tensor_value_info('a', TensorProto.FLOAT, [size, size])]
        outputs = [helper.make_tensor_value_info('c', TensorProto.FLOAT, [size, size])]
    graph = helper.make_graph([node], 'gemm_probe', inputs, outputs, [weight])
    # make_model_gen_version: the IR version that goes with opset 17, not onnx's newest, which
    # ONNX Runtime 1.23 (the last release for Python 3.10) cannot read.
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid('', 17)])
    return model.SerializeToString()


def measure_onnxruntime_gemm(size: int, integer: bool = False, threads: Optional[int] = None,
                             repeats: int = 10) -> float:
    """Best-of-``repeats`` rate of one square ONNX Runtime (MLAS) GEMM, in G(FL)OP/s.

    Args:
        size: Side of the square matrices.
        integer: MatMulInteger (uint8 x int8, the kernel of quantized graphs) instead of fp32.
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        repeats: Timed calls.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3
    session = ort.InferenceSession(_matmul_model(size, integer), options,
                                   providers=['CPUExecutionProvider'])
    rng = np.random.default_rng(1)
    left = (rng.integers(0, 255, (size, size), dtype=np.uint8) if integer
            else rng.standard_normal((size, size), np.float32))
    session.run(None, {'a': left})  # warm-up: thread pool, packing buffers
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {'a': left})
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def measure_peak(threads: Optional[int] = None, sgemm: Optional[Dict[str, float]] = None,
                 sizes: Sequence[int] = GEMM_SIZES, repeats: int = 10,
                 cpuinfo: str = '/proc/cpuinfo') -> Dict[str, object]:
    """Measure the CPU roofline: best of torch sgemm, ONNX Runtime MatMul and the theory.

    Args:
        threads: Threads every measurement uses (None: the libraries' default).
        sgemm: Already measured torch sgemm rates (``describe_machine``): {'best', 'by_size'}.
        sizes: Square GEMM sides of the ONNX Runtime probes.
        repeats: Timed calls per probe.
        cpuinfo: Where to read the flags and clock (tests pass a file).

    Returns:
        ``fp32_gflops`` (the peak), ``fp32_source``, ``int8_gops``, ``int8_source``, each
        measured rate, the theoretical derivation, the ISA flags and ``implied_clock_mhz``
        (the clock the fastest probe needs at the theoretical operations per cycle; above
        the readable clock, the theoretical peak at it is one more candidate).
    """
    flags = read_cpu_flags(cpuinfo)
    identity = read_cpu_identity(cpuinfo)
    cores = threads or physical_cores()
    theory = theoretical_peak(flags, identity, cores, read_max_clock_mhz())
    ort_fp32 = {str(size): round(measure_onnxruntime_gemm(size, False, threads, repeats), 1)
                for size in sizes}
    ort_int8 = {str(size): round(measure_onnxruntime_gemm(size, True, threads, repeats), 1)
                for size in sizes}
    fp32_candidates = {'torch sgemm': (sgemm or {}).get('best'),
                       'onnxruntime MatMul': max(ort_fp32.values()),
                       'theoretical': theory['fp32_gflops']}
    int8_candidates = {'onnxruntime MatMulInteger': max(ort_int8.values()),
                       'theoretical': theory['int8_gops']}
    # The fastest probe proves the cores ran at least this fast (the VM hides boost clocks):
    # the theoretical peak at that clock is a further, higher candidate.
    per_cycle = theory['flop_per_cycle_per_core'] * cores
    implied = max(max(value for key, value in fp32_candidates.items()
                      if key != 'theoretical' and value) / per_cycle,
                  int8_candidates['onnxruntime MatMulInteger'] / (
                      per_cycle * theory['int8_factor'])) * 1e3  # MHz
    if implied > (theory['clock_mhz'] or 0):
        fp32_candidates['theoretical at the measured clock'] = round(per_cycle * implied / 1e3, 1)
        int8_candidates['theoretical at the measured clock'] = round(
            per_cycle * theory['int8_factor'] * implied / 1e3, 1)
    fp32_source, fp32 = _best(fp32_candidates)
    int8_source, int8 = _best(int8_candidates)
    return {'fp32_gflops': fp32, 'fp32_source': fp32_source, 'fp32_candidates': fp32_candidates,
            'int8_gops': int8, 'int8_source': int8_source, 'int8_candidates': int8_candidates,
            'onnxruntime_matmul_gflops_by_size': ort_fp32,
            'onnxruntime_matmulinteger_gops_by_size': ort_int8,
            'theoretical': theory, 'implied_clock_mhz': round(implied),
            'isa_flags': select_isa_flags(flags), 'cpu_identity': identity,
            'threads': threads or os.cpu_count()}


def _best(candidates: Dict[str, Optional[float]]) -> Tuple[str, float]:
    """Return the largest known value and its name."""
    known = {name: value for name, value in candidates.items() if value}
    name = max(known, key=known.get)
    return name, known[name]


def format_peak(peak: Dict[str, object]) -> str:
    """Return a few lines: the candidates, the peak, the derivation."""
    theory = peak['theoretical']
    return '\n'.join([
        f"roofline peak fp32 {peak['fp32_gflops']} GFLOP/s ({peak['fp32_source']}); "
        f"candidates {peak['fp32_candidates']}",
        f"roofline peak int8 {peak['int8_gops']} GOP/s ({peak['int8_source']}); "
        f"candidates {peak['int8_candidates']}",
        f"theoretical: {theory['derivation']}",
        f"the fastest probe implies a clock of at least {peak['implied_clock_mhz']} MHz "
        f"({theory['flop_per_cycle_per_core']} FLOP/cycle/core fp32, x{theory['int8_factor']} "
        'int8)',
        f"ISA flags: {' '.join(peak['isa_flags'])}"])


def add_roofline_fractions(results: List[dict], machine: dict, peak: Optional[dict],
                           flop_per_frame: float,
                           sgemm_in_rounds: Dict[str, Dict[str, float]]) -> None:
    """Add roofline fractions and speed-ups over the reference of the same device (in place).

    CPU rows: ``roofline_fraction`` is the median frame against the peak (fp32 rows: the fp32
    peak; int8 rows: the int8 peak), ``roofline_fraction_best`` the fastest frame against it;
    ``sgemm_fraction`` is the old column (median frame vs the best torch sgemm rate seen,
    before or in the rounds) and ``sgemm_fraction_same_load`` the median frame against the
    sgemm probe's median in the same rounds. CUDA rows: against the measured GPU GEMM rate of
    their precision.
    """
    reference = {(row['device'], row.get('in_rounds_of_batch', 1)): row['ms_per_frame']
                 for row in results if row['kind'] == 'reference'}
    for row in results:
        seconds = row['ms_per_frame'] / 1e3
        if row['device'] == 'cpu':
            in_rounds = sgemm_in_rounds.get(
                f"batch {row.get('in_rounds_of_batch', row['batch'])}", {})
            sgemm = max(machine.get('sgemm_gflops') or 0, in_rounds.get('best', 0)) or None
            int8 = row['precision'] == 'int8'
            rate = (peak or {}).get('int8_gops' if int8 else 'fp32_gflops')
            row['roofline_gflops'] = rate
            row['roofline_fraction'] = _fraction(flop_per_frame, seconds, rate)
            row['roofline_fraction_best'] = _fraction(
                flop_per_frame, row['best_ms_per_frame'] / 1e3, rate)
            row['sgemm_gflops'] = sgemm
            row['sgemm_fraction'] = None if int8 else _fraction(flop_per_frame, seconds, sgemm)
            row['sgemm_fraction_same_load'] = None if int8 else _fraction(
                flop_per_frame, seconds, in_rounds.get('median'))
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
