"""Per-frame postprocessing at camera sizes: the previous implementation against the current one.

    .venv/bin/python -m bench.postprocess [--sizes 640x480,1280x720,1920x1080] [--rounds 30]
        [--maps 6] [--default-malloc] [--out outputs/bench/postprocess.json]

What :class:`FramePipeline` does after inference, frame by frame: the (S, S) map back to the
camera size (bilinear), the grasp mask (threshold 0.5, largest 8-connected component) and,
when someone subscribes to it, the overlay. Both paths run in the same process, interleaved
call by call, on the same maps:

* ``old``: the implementation before it was reworked (kept here, verbatim, as the baseline):
  ``cv2.connectedComponentsWithStats`` on the whole image, NumPy threshold and selection.
* ``new``: the library's ``resize_to_input``, ``compute_grasp_mask`` and ``render_overlay``.

Two kinds of (224, 224) maps: ``scenes`` are the ground-truth heat maps of the synthetic test
scenes (``training.synthetic``; one blurred part, what a trained model returns) and ``patch
noise`` is random 14x14 patch values upsampled (an untrained ViT/16 head: many regions, the
worst case for the mask). Every timed output of the new path is compared with the old one.

Like ``affordance_node``, the process first keeps freed large buffers for reuse
(``perception/allocator.py``); ``--default-malloc`` leaves glibc's defaults (a page fault per
4 KiB of every new MB-sized array).
"""

import argparse
from typing import Dict, List, Optional, Sequence, Tuple

from affordance_grounding.perception.allocator import keep_large_buffers
from affordance_grounding.perception.mask import compute_grasp_mask
from affordance_grounding.perception.postprocess import render_overlay, resize_to_input
from bench.machine import describe_machine
from bench.timing import load_average, summarize, time_interleaved, write_report
import cv2
import numpy as np
from training.synthetic import iter_item_specs, render_item, SyntheticConfig

MODEL_SIZE = 224
THRESHOLD = 0.5
LABEL = 'hold'


def old_resize_to_input(heatmap: np.ndarray, input_hw: Tuple[int, int]) -> np.ndarray:
    """Resize as the previous ``resize_to_input`` did (baseline)."""
    height, width = input_hw
    return cv2.resize(heatmap.astype(np.float32), (width, height),
                      interpolation=cv2.INTER_LINEAR)


def old_compute_grasp_mask(heatmap: np.ndarray, threshold: float,
                           largest_component: bool = True) -> np.ndarray:
    """Mask as the previous ``compute_grasp_mask`` did (baseline)."""
    heatmap = np.asarray(heatmap)
    with np.errstate(invalid='ignore'):
        passed = (heatmap >= threshold).astype(np.uint8)
    if largest_component and passed.any():
        count, labels, stats, _ = cv2.connectedComponentsWithStats(passed, connectivity=8)
        largest = 1 + int(np.argmax(stats[1:count, cv2.CC_STAT_AREA]))
        passed = (labels == largest).astype(np.uint8)
    return passed * np.uint8(255)


def old_render_overlay(rgb: np.ndarray, heatmap: np.ndarray, label: str,
                       alpha: float = 0.5) -> np.ndarray:
    """Draw as the previous ``render_overlay`` did (baseline)."""
    levels = np.clip(heatmap * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(levels, cv2.COLORMAP_JET)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    blended = cv2.addWeighted(bgr, 1.0 - alpha, colour, alpha, 0.0)
    scale = max(0.4, min(blended.shape[:2]) / 500.0)
    origin = (8, int(24 * scale) + 4)
    cv2.putText(blended, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                thickness=4, lineType=cv2.LINE_AA)
    cv2.putText(blended, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thickness=1, lineType=cv2.LINE_AA)
    return blended


def old_frame(network: np.ndarray, rgb: np.ndarray, overlay: bool):
    """Baseline postprocessing of one frame: heatmap, mask, overlay (or None)."""
    full = old_resize_to_input(network, rgb.shape[:2])
    mask = old_compute_grasp_mask(full, THRESHOLD, True)
    return full, mask, old_render_overlay(rgb, full, LABEL) if overlay else None


def label_band_rows(image_hw: Tuple[int, int]) -> int:
    """Rows at the top that the overlay's label may touch (its drawing is not compared)."""
    scale = max(0.4, min(image_hw) / 500.0)
    return int(48 * scale) + 8


def new_frame(network: np.ndarray, rgb: np.ndarray, overlay: bool):
    """Postprocess one frame with the current code, as ``FramePipeline`` composes it."""
    full = resize_to_input(network, rgb.shape[:2])
    mask = compute_grasp_mask(full, THRESHOLD, True)
    blended = render_overlay(rgb, full, LABEL) if overlay else None
    return full, mask, blended


def scene_maps(count: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(map, image) pairs from the synthetic test scenes: GT heat map in [0, 1], RGB image."""
    config = SyntheticConfig(image_size=MODEL_SIZE)
    specs = [spec for spec in iter_item_specs(config) if spec.split == 'testset']
    step = max(1, len(specs) // count)
    pairs = []
    for spec in specs[::step][:count]:
        item = render_item(config, spec)
        rgb = cv2.cvtColor(item.image_bgr, cv2.COLOR_BGR2RGB)
        pairs.append((item.gt.astype(np.float32) / 255.0, rgb))
    return pairs


def patch_noise_maps(count: int, seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(map, image) pairs: 14x14 random patch values upsampled (bicubic), random image."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        patches = rng.random((MODEL_SIZE // 16, MODEL_SIZE // 16)).astype(np.float32)
        heatmap = np.clip(cv2.resize(patches, (MODEL_SIZE, MODEL_SIZE),
                                     interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
        image = rng.integers(0, 256, (MODEL_SIZE, MODEL_SIZE, 3), dtype=np.uint8)
        pairs.append((heatmap, image))
    return pairs


def compare_outputs(old, new) -> Dict[str, float]:
    """Largest differences between the two paths' outputs of one frame."""
    old_full, old_mask, old_overlay = old
    new_full, new_mask, new_overlay = new
    union = np.count_nonzero(old_mask | new_mask)
    iou = np.count_nonzero(old_mask & new_mask) / union if union else 1.0
    result = {'heatmap_max_abs_diff': float(np.max(np.abs(old_full - new_full))),
              'mask_iou': float(iou), 'mask_equal': bool(np.array_equal(old_mask, new_mask))}
    if old_overlay is not None:
        below = label_band_rows(old_overlay.shape[:2])
        result['overlay_max_abs_diff'] = int(np.max(np.abs(
            old_overlay[below:].astype(np.int16) - new_overlay[below:].astype(np.int16))))
    return result


def measure(size: Tuple[int, int], kind: str, pairs, rounds: int, overlay: bool) -> Dict:
    """Interleaved old/new timing over every map of ``pairs`` at camera ``size`` (w, h)."""
    width, height = size
    frames = [(network, cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR))
              for network, image in pairs]
    checks = [compare_outputs(old_frame(network, rgb, overlay), new_frame(network, rgb, overlay))
              for network, rgb in frames]

    def run_all(frame_function):
        return lambda: [frame_function(network, rgb, overlay) for network, rgb in frames]

    samples = time_interleaved({'old': run_all(old_frame), 'new': run_all(new_frame)}, rounds)
    per_frame = {name: summarize([s / len(frames) for s in values])
                 for name, values in samples.items()}
    old_ms, new_ms = (per_frame[name]['median_s'] * 1e3 for name in ('old', 'new'))
    row = {'size': f'{width}x{height}', 'maps': kind, 'overlay': overlay,
           'frames': len(frames), 'old_ms': round(old_ms, 3), 'new_ms': round(new_ms, 3),
           'speedup': round(old_ms / new_ms, 2), 'old': per_frame['old'], 'new': per_frame['new'],
           'min_mask_iou': min(check['mask_iou'] for check in checks),
           'masks_equal': all(check['mask_equal'] for check in checks),
           'heatmap_max_abs_diff': max(check['heatmap_max_abs_diff'] for check in checks)}
    if overlay:
        row['overlay_max_abs_diff'] = max(check['overlay_max_abs_diff'] for check in checks)
    return row


def format_table(rows: Sequence[Dict]) -> str:
    """Return the report as a text table (median ms per frame)."""
    lines = ['size       maps         overlay  old ms   new ms   old/new  masks equal  '
             'min IoU  heatmap diff  overlay diff']
    for row in rows:
        lines.append(f"{row['size']:<10} {row['maps']:<12} {'yes' if row['overlay'] else 'no':<8} "
                     f"{row['old_ms']:>6.2f}   {row['new_ms']:>6.2f}   {row['speedup']:>6.2f}x  "
                     f"{str(row['masks_equal']):<12} {row['min_mask_iou']:.4f}   "
                     f"{row['heatmap_max_abs_diff']:.1e}       "
                     f"{row.get('overlay_max_abs_diff', '-')}")
    return '\n'.join(lines)


def parse_size(text: str) -> Tuple[int, int]:
    """``WIDTHxHEIGHT`` -> (width, height)."""
    width, height = text.lower().split('x')
    return int(width), int(height)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark, print the table, write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='640x480,1280x720,1920x1080')
    parser.add_argument('--rounds', type=int, default=30, help='timed rounds per path')
    parser.add_argument('--maps', type=int, default=6, help='maps per kind')
    parser.add_argument('--default-malloc', action='store_true',
                        help="keep glibc's allocator defaults (the node raises its thresholds)")
    parser.add_argument('--out', default='outputs/bench/postprocess.json')
    args = parser.parse_args(argv)
    kept = False if args.default_malloc else keep_large_buffers()
    kinds = {'scenes': scene_maps(args.maps), 'patch noise': patch_noise_maps(args.maps)}
    load_before = load_average()
    rows = [measure(parse_size(size), kind, pairs, args.rounds, overlay)
            for size in args.sizes.split(',') for overlay in (False, True)
            for kind, pairs in kinds.items()]
    print(f'Postprocessing per frame (resize, grasp mask, overlay when "yes"), median ms over '
          f'{args.rounds} interleaved rounds of {args.maps} maps; large buffers kept: {kept}; '
          f'load {load_before} -> {load_average()}')
    print(format_table(rows))
    write_report({'machine': describe_machine(measure_gemm=False), 'rounds': args.rounds,
                  'threshold': THRESHOLD, 'large_buffers_kept': kept, 'load_before': load_before,
                  'load_after': load_average(), 'rows': rows}, args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
