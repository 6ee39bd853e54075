r"""Evaluate a model bundle: KLD / SIM / NSS of the three test-time maps, plus a contact sheet.

    python -m training.evaluate --checkpoint outputs/train/best.pt --data-root data/AGD20K \\
        --split Seen --out-dir outputs/eval

The test transform is deterministic, so the frozen-backbone features of the test set are
computed once (:func:`extract_test_features`) and every later evaluation (one per epoch during
training) only runs the small head.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path
import sys
from typing import Dict, List, Optional, Sequence

from affordance_grounding.config import CALIBRATIONS
from affordance_grounding.inference.io_spec import BackendUnavailableError
from affordance_grounding.inference.selection import resolve_device
from affordance_grounding.model.checkpoint import CheckpointError, load_grounder
from affordance_grounding.model.grounding import AffordanceGrounder, BackboneFeatures
import numpy as np
import torch
from tqdm import tqdm
from training.config import TrainConfig
from training.contact_sheet import render_sheet_row, write_sheet
from training.metrics import compute_metrics, MetricAccumulator, MetricSummary, normalize_map
from training.run_files import write_json

MAP_TITLES = {'none': 'map 1: cam', 'clip': 'map 2: minmax(S) * cam',
              'clip_local_mean': 'map 3: minmax(S) * LM(cam)'}


@dataclass
class TestFeatures:
    """Frozen features and ground truth of a test set (on the CPU).

    Attributes:
        clip_tokens: (N, P, E) ClearCLIP patch features.
        dino_keys: (N, P, D) DINO keys.
        labels: (N,) int64 label indices.
        class_names: Affordance name of each image.
        gts: (224, 224) float64 GT maps in [0, 1].
        images: (N, 3, S, S) uint8 RGB network inputs (for contact sheets).
    """

    clip_tokens: torch.Tensor
    dino_keys: torch.Tensor
    labels: torch.Tensor
    class_names: List[str]
    gts: List[np.ndarray]
    images: torch.Tensor

    def __len__(self) -> int:
        """Return the number of test images."""
        return len(self.class_names)


def to_display_uint8(images: torch.Tensor, mean: Sequence[float],
                     std: Sequence[float]) -> torch.Tensor:
    """Undo the input normalisation: (N, 3, S, S) float -> (N, 3, S, S) uint8 RGB."""
    mean_t = torch.tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    return ((images * std_t + mean_t) * 255.0).round().clamp(0, 255).to(torch.uint8)


@torch.inference_mode()
def extract_test_features(grounder: AffordanceGrounder, items, device: torch.device,
                          batch_size: int = 16, limit: int = 0) -> TestFeatures:
    """Run the frozen backbones over test items once.

    Args:
        grounder: The network (only its backbones are used).
        items: Sequence of test items with ``image`` (3, S, S), ``label`` (int),
            ``affordance`` (str) and ``gt`` ((224, 224) float64) fields.
        device: Where to run the backbones.
        batch_size: Images per backbone pass.
        limit: Use only the first ``limit`` items (0 = all).

    Returns:
        The cached features.
    """
    count = min(len(items), limit) if limit else len(items)
    config = grounder.config
    clip_parts, dino_parts, image_parts = [], [], []
    labels, names, gts = [], [], []
    for start in tqdm(range(0, count, batch_size), desc='test features', leave=False):
        batch = [items[index] for index in range(start, min(start + batch_size, count))]
        images = torch.stack([item.image for item in batch])  # (n, 3, S, S)
        features = grounder.forward_features(images.to(device))
        clip_parts.append(features.clip_tokens.float().cpu())
        dino_parts.append(features.dino_keys.float().cpu())
        image_parts.append(to_display_uint8(images, config.dino_mean, config.dino_std))
        labels.extend(int(item.label) for item in batch)
        names.extend(item.affordance for item in batch)
        gts.extend(item.gt for item in batch)
    return TestFeatures(clip_tokens=torch.cat(clip_parts), dino_keys=torch.cat(dino_parts),
                        labels=torch.tensor(labels, dtype=torch.long), class_names=names,
                        gts=gts, images=torch.cat(image_parts))


@torch.inference_mode()
def predict_maps(grounder: AffordanceGrounder, features: TestFeatures, indices: Sequence[int],
                 calibrations: Sequence[str] = CALIBRATIONS,
                 batch_size: int = 64) -> Dict[str, np.ndarray]:
    """Head-only forward for cached features: ``{calibration: (n, G, G) float32}``."""
    device = grounder.item_text.device
    outputs: Dict[str, List[np.ndarray]] = {name: [] for name in calibrations}
    index_tensor = torch.as_tensor(list(indices), dtype=torch.long)
    for start in range(0, len(index_tensor), batch_size):
        chosen = index_tensor[start:start + batch_size]
        cached = BackboneFeatures(clip_tokens=features.clip_tokens[chosen].to(device),
                                  dino_keys=features.dino_keys[chosen].to(device))
        maps = grounder.forward_head(cached, features.labels[chosen].to(device))
        for name in calibrations:
            outputs[name].append(maps.select(name)[:, 0].float().cpu().numpy())
    return {name: np.concatenate(parts) if parts else np.zeros((0,))
            for name, parts in outputs.items()}


def evaluate_features(grounder: AffordanceGrounder, features: TestFeatures,
                      indices: Optional[Sequence[int]] = None,
                      calibrations: Sequence[str] = CALIBRATIONS) -> Dict[str, MetricSummary]:
    """Score each calibration's map with KLD / SIM / NSS (docs/method.md) on chosen items."""
    indices = list(range(len(features))) if indices is None else list(indices)
    maps = predict_maps(grounder, features, indices, calibrations)
    summaries = {}
    for name in calibrations:
        accumulator = MetricAccumulator()
        for row, index in enumerate(indices):
            prediction = normalize_map(maps[name][row].astype(np.float32))
            accumulator.add(compute_metrics(prediction, features.gts[index]),
                            features.class_names[index])
        summaries[name] = accumulator.summary()
    return summaries


def split_for_selection(features: TestFeatures, fraction: float, seed: int):
    """Split test items per class into (validation, report) index lists, deterministically.

    Every class keeps at least one report image; a class with one image is not validated.
    """
    generator = np.random.default_rng(seed)
    validation, report = [], []
    names = np.array(features.class_names)
    for class_name in sorted(set(features.class_names)):
        members = np.flatnonzero(names == class_name)
        generator.shuffle(members)
        take = min(int(round(len(members) * fraction)), len(members) - 1)
        validation.extend(members[:take].tolist())
        report.extend(members[take:].tolist())
    return sorted(validation), sorted(report)


def write_contact_sheet(path: Path, grounder: AffordanceGrounder, features: TestFeatures,
                        indices: Sequence[int], tile: int = 160) -> Path:
    """Write a PNG: one row per image with the input, the three maps and the GT as overlays."""
    maps = predict_maps(grounder, features, indices)
    rows = []
    for row, index in enumerate(indices):
        rgb = features.images[index].permute(1, 2, 0).numpy()  # (S, S, 3) uint8
        titled = [(MAP_TITLES[name].split(':')[0], maps[name][row]) for name in CALIBRATIONS]
        rows.append(render_sheet_row(rgb, titled, features.gts[index],
                                     f'GT {features.class_names[index]}', tile))
    return write_sheet(path, rows, (tile, tile * (len(CALIBRATIONS) + 2)))


def summaries_to_dict(summaries: Dict[str, MetricSummary]) -> Dict[str, dict]:
    """Plain-JSON form of the per-map summaries."""
    return {name: {'title': MAP_TITLES[name], 'mean': summary.mean,
                   'per_class': summary.per_class, 'num_images': summary.num_images,
                   'images_per_class': summary.images_per_class}
            for name, summary in summaries.items()}


def format_table(summaries: Dict[str, MetricSummary]) -> str:
    """Fixed-width table of the mean metrics per map."""
    lines = [f"{'map':32s} {'KLD':>7s} {'SIM':>7s} {'NSS':>7s} {'images':>7s}"]
    for name, summary in summaries.items():
        mean = summary.mean
        lines.append(f"{MAP_TITLES[name]:32s} {mean['kld']:7.3f} {mean['sim']:7.3f} "
                     f"{mean['nss']:7.3f} {summary.num_images:7d}")
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description='Evaluate a model bundle (KLD/SIM/NSS).')
    parser.add_argument('--checkpoint', required=True, help='model bundle (.pt)')
    parser.add_argument('--data-root', required=True, help='dataset root (AGD20K layout)')
    parser.add_argument('--split', default='Seen', help='Seen, Unseen, or none (HICO-IIF)')
    parser.add_argument('--out-dir', default='outputs/eval')
    parser.add_argument('--device', default=TrainConfig.device,
                        help='auto (CUDA when PyTorch sees it, else the CPU with a warning; '
                             'the training default), cpu, cuda or cuda:N')
    parser.add_argument('--limit', type=int, default=0, help='evaluate the first N images')
    parser.add_argument('--sheet-rows', type=int, default=8, help='contact-sheet rows')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Evaluate, print the table, write metrics.json and contact_sheet.png."""
    from training.data import DatasetLayoutError, layout_for_model, TestDataset

    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        grounder = load_grounder(args.checkpoint, device=device)
        split = None if args.split.lower() == 'none' else args.split
        layout = layout_for_model(args.data_root, split, grounder.config)
        dataset = TestDataset(layout)
    except (BackendUnavailableError, CheckpointError, DatasetLayoutError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    features = extract_test_features(grounder, dataset, torch.device(device),
                                     limit=args.limit)
    summaries = evaluate_features(grounder, features)
    out_dir = Path(args.out_dir)
    write_json(out_dir / 'metrics.json', summaries_to_dict(summaries))
    sheet_rows = list(range(0, len(features), max(1, len(features) // max(args.sheet_rows, 1))))
    write_contact_sheet(out_dir / 'contact_sheet.png', grounder, features,
                        sheet_rows[:args.sheet_rows])
    print(format_table(summaries))
    print(f'wrote {out_dir}/metrics.json and {out_dir}/contact_sheet.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())
