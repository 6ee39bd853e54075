"""Robot view: small objects in a 640x480 frame, the whole frame against detector regions.

    .venv/bin/python -m bench.robot_view [--checkpoint outputs/train_synthetic_pretrained/best.pt]
        [--data-root data/synthetic_abl] [--frames N] [--margin 0.25]
        [--out outputs/bench/robot_view.json] [--sheet outputs/bench/robot_view.png]

Frames come from bench.robot_view_scenes (three test objects of different kinds at 3-8% of
the frame, one affording the action). Rows: the whole frame as the node runs it today; the
true boxes; the true boxes jittered as a detector would (+-15%); the original object-centric
test images. Each is scored inside the target's box with training.metrics (KLD / SIM / NSS),
and by ranking accuracy: how often the object that affords the action gets the best score
(chance 1/3). Then the cost per frame of 1, 3 and 6 regions against the whole frame, timed
interleaved in the same run. Needs a trained synthetic model (docs/benchmarks.md, "Robot view").
"""

import argparse
from pathlib import Path
import sys
import time
from typing import Dict, List, Optional, Sequence

from affordance_grounding.fileio import write_bytes_atomically
from affordance_grounding.perception.regions import choose_regions, DEFAULT_ROI_MARGIN
from bench.machine import describe_machine
from bench.robot_view_eval import (
    DETECTOR_ROWS, evaluate_frame, frame_job, load_runner, MapRunner, ROWS, summarize_rows,
    UNIFORM)
from bench.robot_view_scenes import build_frames, RobotFrame
from bench.robot_view_sheet import render_sheet
from bench.timing import load_average, summarize, time_interleaved, write_report
import cv2
import numpy as np

REGION_COUNTS = (1, 3, 6)
TARGETS = {'true boxes': 0.10, 'jittered boxes': 0.20}  # KLD above object-centric, at most
RANKING_TARGET = 0.85
COST_TARGET = 3.0  # three regions against one whole frame, CPU


def time_frames(runner: MapRunner, frames: Sequence[RobotFrame], margin: float,
                rounds: int) -> dict:
    """Cost per frame of the whole frame and of 1, 3 and 6 regions, in interleaved rounds.

    Two sets, timed in the same rounds: the frame job as a node runs it (preprocess, one
    backend call, heatmap, grasp mask, overlay) and the backend call alone on a prepared
    batch, which shows how much of the ratio is inference.
    """
    def job(count: Optional[int]):
        def run() -> None:
            for frame in frames:
                regions = None
                if count is not None:
                    boxes = ([item.box for item in frame.objects] + list(frame.jittered))[:count]
                    regions = choose_regions(boxes, frame.rgb.shape[:2], count).regions
                frame_job(runner, frame.rgb, runner.class_index(frame.action), regions, margin)
        return run

    def inference(batch: int):
        images = np.zeros((batch, 3, runner.size, runner.size), np.float32)
        return lambda: [runner.backend.infer(images) for _ in frames]

    names = {None: 'whole frame', **{count: f'{count} regions' for count in REGION_COUNTS}}
    functions = {f'frame job, {name}': job(count) for count, name in names.items()}
    functions.update({f'inference, {name}': inference(count or 1)
                      for count, name in names.items()})
    samples = time_interleaved(functions, rounds)
    per_frame = {name: summarize([value / len(frames) for value in values])
                 for name, values in samples.items()}
    ratios = {name: round(stats['median_s']
                          / per_frame[name.split(',')[0] + ', whole frame']['median_s'], 3)
              for name, stats in per_frame.items()}
    return {'frames': len(frames), 'rounds': rounds,
            'per_frame': {name: {key: round(value, 5) for key, value in stats.items()}
                          for name, stats in per_frame.items()},
            'ratio_vs_whole_frame': ratios}


def check_targets(settings: Dict[str, dict], timing: dict) -> dict:
    """Return each target of the issue: the measured values and whether it holds."""
    out = {}
    for row, limit in TARGETS.items():
        deltas = {name: round(result['rows'][row]['kld']
                              - result['rows']['object-centric']['kld'], 4)
                  for name, result in settings.items()}
        out[f'{row} KLD - object-centric KLD'] = {
            'limit': limit, 'values': deltas, 'met': all(d <= limit for d in deltas.values())}
    accuracy = {f'{name} {row}': result['rows'][row]['ranking_accuracy']
                for name, result in settings.items() for row in DETECTOR_ROWS}
    out['ranking accuracy'] = {'limit': RANKING_TARGET, 'values': accuracy,
                               'met': all(value >= RANKING_TARGET for value in accuracy.values())}
    ratio = timing['ratio_vs_whole_frame']['frame job, 3 regions']
    out['3 regions cost / whole frame'] = {'limit': COST_TARGET, 'values': {'cpu': ratio},
                                           'met': ratio <= COST_TARGET}
    return out


def run(args: argparse.Namespace) -> dict:
    """Build the frames, score every row, time the region counts; the JSON-ready report."""
    started, load_start = time.perf_counter(), load_average()
    runner = load_runner(args.checkpoint, args.backend, args.cache_dir, args.device)
    settings, sheet_rows = {}, []
    for setting in args.settings:
        frames = build_frames(Path(args.data_root), setting, args.frames, args.seed)
        shown = set(np.linspace(0, len(frames) - 1, args.sheet_frames).round().astype(int))
        evaluated = [(frame, evaluate_frame(runner, frame, args.margin,
                                            keep_heatmaps=number in shown))
                     for number, frame in enumerate(frames)]
        settings[setting] = dict(summarize_rows(evaluated), frames=len(frames))
        sheet_rows += [evaluated[number] for number in sorted(shown)]
        if setting == args.settings[0]:
            timing_frames = frames[:args.timing_frames]
    timing = time_frames(runner, timing_frames, args.margin, args.timing_rounds)
    if args.sheet:
        png = cv2.imencode('.png', render_sheet(sheet_rows))[1]  # (N,) uint8 PNG bytes
        write_bytes_atomically(args.sheet, png.tobytes())
        print(f'wrote {args.sheet}')
    return {'machine': describe_machine(measure_gemm=False), 'checkpoint': args.checkpoint,
            'data_root': args.data_root, 'backend': runner.backend.describe(),
            'margin': args.margin, 'seed': args.seed, 'rows': list(ROWS),
            'settings': settings, 'timing': timing, 'targets': check_targets(settings, timing),
            'load_average_start': load_start, 'load_average_end': load_average(),
            'seconds': round(time.perf_counter() - started, 1)}


def format_table(report: dict) -> str:
    """Fixed-width table: metrics and ranking per row and setting, costs, targets."""
    lines = [f"{'setting':7s} {'row':19s} {'KLD':>6s} {'SIM':>6s} {'NSS':>6s} {'heat in':>7s} "
             f"{'weighted':>8s} {'rank acc':>8s}"]
    for name, result in report['settings'].items():
        for row in ROWS + (UNIFORM,):
            values = result['rows'][row]
            accuracy = values.get('ranking_accuracy')
            shown = '' if accuracy is None else f'{accuracy:.3f}'
            share = values.get('heat_share_weighted')
            dimmed = '' if share is None else f'{share:.1%}'
            lines.append(f"{name:7s} {row:19s} {values['kld']:6.3f} {values['sim']:6.3f} "
                         f"{values['nss']:6.3f} {values['heat_share']:7.1%} {dimmed:>8s} "
                         f'{shown:>8s}')
    timing = report['timing']
    lines.append(f"cost per frame ({report['backend']}, {timing['frames']} frames x "
                 f"{timing['rounds']} rounds, interleaved):")
    for name, stats in timing['per_frame'].items():
        lines.append(f"  {name:27s} {stats['median_s'] * 1e3:8.1f} ms  "
                     f"{timing['ratio_vs_whole_frame'][name]:5.2f}x whole frame")
    for name, target in report['targets'].items():
        values = ', '.join(f'{key} {value}' for key, value in target['values'].items())
        lines.append(f"target {name} (limit {target['limit']}): {values}: "
                     f"{'met' if target['met'] else 'NOT met'}")
    return '\n'.join(lines)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', default='outputs/train_synthetic_pretrained/best.pt')
    parser.add_argument('--data-root', default='data/synthetic_abl')
    parser.add_argument('--settings', nargs='+', default=['Seen', 'Unseen'],
                        choices=['Seen', 'Unseen'])
    parser.add_argument('--frames', type=int, help='frames per setting (default: one per '
                        'test image)')
    parser.add_argument('--margin', type=float, default=DEFAULT_ROI_MARGIN)
    parser.add_argument('--backend', default='onnxruntime', choices=['onnxruntime', 'torch'])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--timing-frames', type=int, default=4)
    parser.add_argument('--timing-rounds', type=int, default=10)
    parser.add_argument('--sheet-frames', type=int, default=3, help='per setting')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cache-dir', default='outputs/bench/cache')
    parser.add_argument('--out', default='outputs/bench/robot_view.json')
    parser.add_argument('--sheet', default='outputs/bench/robot_view.png')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Run, print the table, write the JSON file and the contact sheet."""
    args = parse_args(argv)
    for path in (args.checkpoint, *(Path(args.data_root) / name for name in args.settings)):
        if not Path(path).exists():
            print(f'error: {path} not found (python -m training.synthetic --out '
                  f'data/synthetic_abl --train-per-object 16 --test-per-object 10, then '
                  f'python -m training.train '
                  f'--config training/configs/synthetic_pretrained.yaml epochs=4)',
                  file=sys.stderr)
            return 2
    report = run(args)
    print(format_table(report))
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
