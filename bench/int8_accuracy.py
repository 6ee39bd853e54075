"""KLD / SIM / NSS of the int8 graphs against the fp32 graph, on a trained synthetic model.

    .venv/bin/python -m bench.int8_accuracy \
        [--checkpoint outputs/train_synthetic_pretrained/best.pt] \
        [--data-root data/synthetic_abl] [--methods dynamic static] \
        [--out outputs/bench/int8_accuracy.json]

Exports the bundle to fp32 ONNX (training.graph_export), quantizes it with every method
(training.quantize, calibrated and gated on training images), runs all graphs through
``OnnxRuntimeBackend`` on the same report images (training.evaluate's held-out split, the one
the training run reports on) and scores map 1 (cam) and map 2 (minmax(S) * cam) with the
evaluation's metrics. PyTorch fp32 through training.evaluate is the cross-check of the fp32
graph. Only the synthetic world has a trained model here: full-size random weights have no real
activation statistics, so accuracy is claimed for the synthetic model only (docs/benchmarks.md).
"""

import argparse
from pathlib import Path
import sys
import time
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

from affordance_grounding.inference.backends import OnnxRuntimeBackend
from affordance_grounding.model.checkpoint import load_grounder
from bench.machine import describe_machine
from bench.timing import load_average, write_report
import numpy as np
import torch
from training.config import TrainConfig
from training.evaluate import evaluate_features, extract_test_features, split_for_selection
from training.graph_export import export_onnx
from training.metrics import compute_metrics, MetricAccumulator, normalize_map
from training.parity import compute_map_cosines
from training.quantize import list_image_files, QuantizationError, quantize_onnx, QuantizeOptions

KLD_TARGET_DELTA = 0.02
MAPS = ('none', 'clip')  # map 1: cam, map 2: minmax(S) * cam (the exported default)


def onnx_maps(path: Path, images: torch.Tensor, labels: Sequence[int],
              batch: int = 16) -> Dict[str, np.ndarray]:
    """Map 1 and map 2 of each image's own label from an ONNX graph: {map: (N, G, G)}."""
    backend = OnnxRuntimeBackend(str(path)).load()
    cams, affinities = [], []
    for start in range(0, len(images), batch):
        result = backend.infer(images[start:start + batch].numpy())
        rows = np.arange(result.cam.shape[0])
        chosen = np.asarray(labels[start:start + batch])
        cams.append(result.cam[rows, chosen])
        affinities.append(result.affinity[rows, chosen])
    backend.close()
    cam, affinity = np.concatenate(cams), np.concatenate(affinities)
    return {'none': cam, 'clip': affinity * cam}


def score(maps: Dict[str, np.ndarray], gts: List[np.ndarray], names: List[str]) -> Dict:
    """Mean KLD / SIM / NSS per map, as training.evaluate computes them."""
    out = {}
    for name in MAPS:
        accumulator = MetricAccumulator()
        for prediction, gt, class_name in zip(maps[name], gts, names):
            accumulator.add(compute_metrics(normalize_map(prediction), gt), class_name)
        out[name] = {key: round(value, 4) for key, value in accumulator.summary().mean.items()}
    return out


def run(checkpoint: str, data_root: str, split: str, calibration_data: str,
        methods: Sequence[str], cache_dir: str) -> dict:
    """Export, quantize, score; returns the JSON-ready report."""
    from training.data import layout_for_model, TestDataset

    started = time.perf_counter()
    grounder = load_grounder(checkpoint)
    dataset = TestDataset(layout_for_model(data_root, split, grounder.config))
    items = [dataset[index] for index in range(len(dataset))]
    defaults = TrainConfig()
    _, report_indices = split_for_selection(
        SimpleNamespace(class_names=[item.affordance for item in items]),
        defaults.val_fraction, defaults.seed)
    chosen = [items[index] for index in report_indices]
    images = torch.stack([item.image for item in chosen])
    labels = [int(item.label) for item in chosen]
    gts, names = [item.gt for item in chosen], [item.affordance for item in chosen]
    cache = Path(cache_dir)
    fp32_path = cache / 'synthetic_fp32.onnx'
    export_onnx(grounder, str(fp32_path))
    features = extract_test_features(grounder, items, torch.device('cpu'))
    torch_scores = evaluate_features(grounder, features, report_indices, MAPS)
    rows = [{'model': 'torch fp32 (training.evaluate)', 'metrics': {
        name: {key: round(value, 4) for key, value in summary.mean.items()}
        for name, summary in torch_scores.items()}}]
    reference = onnx_maps(fp32_path, images, labels)
    rows.append({'model': 'onnxruntime fp32', 'metrics': score(reference, gts, names)})
    calibration = tuple(str(path) for path in list_image_files(calibration_data))
    for method in methods:
        path = cache / f'synthetic_int8_{method}.onnx'
        row = {'model': f'onnxruntime int8 {method}'}
        try:
            quantized = quantize_onnx(str(fp32_path), str(path), QuantizeOptions(
                method=method, calibration_images=calibration))
        except QuantizationError as error:
            rows.append(dict(row, error=str(error)))
            continue
        maps = onnx_maps(path, images, labels)
        row['metrics'] = score(maps, gts, names)
        row['export_gate'] = {'min_cosine': quantized.min_cosine,
                              'images': quantized.parity_images}
        row['report_images_cosine'] = {
            name: {'min': round(float(values.min()), 5), 'mean': round(float(values.mean()), 5)}
            for name, values in ((name, compute_map_cosines(maps[name][:, None],
                                                            reference[name][:, None]))
                                 for name in MAPS)}
        row['kld_delta_vs_fp32'] = {
            name: round(row['metrics'][name]['kld'] - rows[1]['metrics'][name]['kld'], 4)
            for name in MAPS}
        row['kld_target_holds'] = all(delta <= KLD_TARGET_DELTA
                                      for delta in row['kld_delta_vs_fp32'].values())
        rows.append(row)
    return {'machine': describe_machine(measure_gemm=False), 'checkpoint': checkpoint,
            'data_root': data_root, 'split': split, 'report_images': len(chosen),
            'calibration_data': calibration_data, 'rows': rows,
            'kld_target': f'int8 KLD - fp32 KLD <= +{KLD_TARGET_DELTA} (map 1 and map 2)',
            'load_average_end': load_average(), 'seconds': round(time.perf_counter() - started)}


def format_table(report: dict) -> str:
    """Fixed-width table: metrics per model and map, deltas, cosines."""
    lines = [f"{report['report_images']} report images of {report['data_root']} "
             f"({report['split']}); {report['kld_target']}",
             f"{'model':34s} {'map':5s} {'KLD':>7s} {'SIM':>7s} {'NSS':>7s} {'dKLD':>7s} "
             f"{'min cos':>8s}"]
    for row in report['rows']:
        if 'error' in row:
            lines.append(f"{row['model']:34s} failed: {row['error']}")
            continue
        for name in MAPS:
            metrics = row['metrics'][name]
            delta = row.get('kld_delta_vs_fp32', {}).get(name)
            cosine = row.get('report_images_cosine', {}).get(name, {}).get('min')
            lines.append(f"{row['model']:34s} {name:5s} {metrics['kld']:7.3f} "
                         f"{metrics['sim']:7.3f} {metrics['nss']:7.3f} "
                         f"{'' if delta is None else f'{delta:+.4f}':>7s} "
                         f"{'' if cosine is None else f'{cosine:.5f}':>8s}")
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run, print the table, write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', default='outputs/train_synthetic_pretrained/best.pt')
    parser.add_argument('--data-root', default='data/synthetic_abl')
    parser.add_argument('--split', default='Seen')
    parser.add_argument('--int8-images', help='int8 calibration images (default: '
                                              '<data-root>/<split>/trainset)')
    parser.add_argument('--methods', nargs='+', default=['dynamic', 'static'])
    parser.add_argument('--cache-dir', default='outputs/bench/cache')
    parser.add_argument('--out', default='outputs/bench/int8_accuracy.json')
    args = parser.parse_args(argv)
    calibration = args.int8_images or str(Path(args.data_root) / args.split / 'trainset')
    for path in (args.checkpoint, calibration):
        if not Path(path).exists():
            print(f'error: {path} not found (python -m training.synthetic, then training.train '
                  f'with training/configs/synthetic_pretrained.yaml)', file=sys.stderr)
            return 2
    report = run(args.checkpoint, args.data_root, args.split, calibration, args.methods,
                 args.cache_dir)
    print(format_table(report))
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
