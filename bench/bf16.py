"""bfloat16 on the CPU, measured once: PyTorch autocast and ONNX Runtime, against fp32.

    .venv/bin/python -m bench.bf16 [--rounds 6] [--out outputs/bench/bf16.json]

Only meaningful where the CPU has ``avx512_bf16`` (or AMX): it is recorded with the ISA flags.
PyTorch: the backbones under ``torch.autocast('cpu', torch.bfloat16)``, the rest fp32 (as the
CUDA fp16 path does), timed in interleaved rounds with fp32 on the full-size architecture, with
the per-map cosine of ``cam``/``affinity`` against fp32. ONNX Runtime: whether its CPU execution
provider has a bfloat16 MatMul kernel at all (a one-node graph); without one a bf16 graph
cannot run, so nothing is timed. The shipped CPU paths (ONNX Runtime fp32 and int8, from
bench.inference's cache) run in the same rounds: bf16 is kept only if it beats the fastest.
"""

import argparse
import sys
from typing import Dict, List, Optional

from affordance_grounding.inference.backends import BackendOptions, OnnxRuntimeBackend
from affordance_grounding.inference.graph import GroundingGraph
from bench.machine import describe_machine
from bench.model_cache import build_full_size, DEFAULT_CACHE, ensure_onnx, Int8Settings
from bench.timing import load_average, summarize, time_interleaved, write_report
import numpy as np
import torch
from training.parity import compute_min_map_cosine


def onnxruntime_bf16_matmul() -> Dict[str, object]:
    """Try a bfloat16 MatMul on ONNX Runtime's CPU provider; returns whether it loads."""
    import onnxruntime as ort
    from onnx import helper, TensorProto

    values = [helper.make_tensor_value_info(name, TensorProto.BFLOAT16, [64, 64])
              for name in ('a', 'b', 'c')]
    graph = helper.make_graph([helper.make_node('MatMul', ['a', 'b'], ['c'])], 'bf16',
                              values[:2], values[2:])
    # The IR version that goes with opset 17 (ONNX Runtime 1.23, for Python 3.10, reads <= 11).
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid('', 17)])
    try:
        ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    except Exception as error:  # NOT_IMPLEMENTED: no kernel
        return {'available': False, 'reason': f'{type(error).__name__}: '
                                              f'{str(error).splitlines()[0][:200]}'}
    return {'available': True, 'reason': None}


def run(rounds: int = 6, seed: int = 0, cache_dir: str = DEFAULT_CACHE,
        threads: Optional[int] = None) -> dict:
    """Time PyTorch fp32 vs bf16 autocast; probe ONNX Runtime bf16; returns the report."""
    if threads:
        torch.set_num_threads(threads)
    machine = describe_machine(measure_gemm=False)
    grounder, _, _ = build_full_size(seed)
    graph = GroundingGraph(grounder, 'clip', 'fp32').eval()
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed))

    @torch.inference_mode()
    def forward(bf16: bool):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            features = graph.compute_features(image)
        return graph.compute_outputs(features)
    fp32_out = [tensor.float().numpy() for tensor in forward(False)]
    bf16_out = [tensor.float().numpy() for tensor in forward(True)]
    cosine = {name: compute_min_map_cosine(got, want)
              for name, got, want in zip(('affordance', 'cam', 'affinity'), bf16_out, fp32_out)}
    calls = {'torch fp32': lambda: forward(False), 'torch bf16 autocast': lambda: forward(True)}
    pixels = image.numpy()
    for precision in ('fp32', 'int8'):
        path = ensure_onnx(grounder, cache_dir, seed, precision, Int8Settings())[0]
        backend = OnnxRuntimeBackend(str(path), options=BackendOptions(
            intra_op_threads=threads)).load()
        calls[f'onnxruntime {precision}'] = lambda b=backend: b.infer(pixels)
    samples = time_interleaved(calls, rounds, 1)
    stats = {name: summarize(values) for name, values in samples.items()}
    ratio = stats['torch fp32']['median_s'] / stats['torch bf16 autocast']['median_s']
    fastest_shipped = min(stats['onnxruntime fp32']['median_s'],
                          stats['onnxruntime int8']['median_s'])
    return {'machine': machine, 'rounds': rounds, 'threads': threads,
            'ms': {name: round(stat['median_s'] * 1e3, 1) for name, stat in stats.items()},
            'spread': {name: round(stat['spread'], 3) for name, stat in stats.items()},
            'torch_bf16_speedup': round(ratio, 2), 'torch_bf16_min_map_cosine': cosine,
            'onnxruntime_bf16_matmul': onnxruntime_bf16_matmul(),
            'bf16_vs_fastest_shipped': round(
                fastest_shipped / stats['torch bf16 autocast']['median_s'], 2),
            'keep_bf16': stats['torch bf16 autocast']['median_s'] < fastest_shipped,
            'load_average_end': load_average()}


def main(argv: Optional[List[str]] = None) -> int:
    """Run, print a summary, write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=6)
    parser.add_argument('--threads', type=int, help='intra-op threads (default: all cores)')
    parser.add_argument('--out', default='outputs/bench/bf16.json')
    args = parser.parse_args(argv)
    report = run(args.rounds, threads=args.threads)
    flags = [flag for flag in report['machine']['isa_flags'] if 'bf16' in flag or 'amx' in flag]
    print(f"bf16 ISA flags: {flags or 'none'}; load {report['machine']['load_average']} -> "
          f"{report['load_average_end']}")
    print(f"median ms: {report['ms']}; torch bf16 vs fp32 "
          f"{report['torch_bf16_speedup']}x, vs the fastest ONNX Runtime row "
          f"{report['bf16_vs_fastest_shipped']}x; "
          f"min map cosine {np.round(list(report['torch_bf16_min_map_cosine'].values()), 6)}")
    print(f"onnxruntime bf16 MatMul on the CPU: {report['onnxruntime_bf16_matmul']}")
    print(f"keep bf16: {report['keep_bf16']}")
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
