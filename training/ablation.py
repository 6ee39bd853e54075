r"""The paper's ablation rows on a fixed synthetic test split, over several seeds.

``python -m training.ablation --model-config config/model_synthetic.yaml --seeds 0 1 2
--out outputs/ablation --json docs/ablation_synthetic.json``

Builds one synthetic data set in both settings (fixed seed, so every row sees the same
train and test images), trains the head once per (training configuration, seed) with
``training.train`` on the Seen setting and reads each run's ``metrics.json`` (scores of
``best.pt`` on the Seen report split). The rows, in the order of the paper's Table 2:

====  =============================================  ===========================  ============
row   title                                          training switches            map scored
====  =============================================  ===========================  ============
a     CE only                                        no proto, no pixel loss      1 (CAM)
b     CE + calibration                               no proto, no pixel loss      2 (CLIP x CAM)
c     + object-level prototype loss                  object prototypes, no pixel  1
f     + part-level selective prototype loss          part prototypes, no pixel    1
h     + pixel loss                                   everything                   1
i     + test-time calibration                        everything                   2
====  =============================================  ===========================  ============

Every run selects its epoch the same way (``selection=val``: KLD of map 2 on a held-out 20%
of the Seen test images; Seen scores are on the other 80%). The Unseen setting's training
images are the Seen ones (same generator items), so the same ``best.pt`` is then scored on
every Unseen test image (objects never seen in training; ``metrics_unseen.json``): no
Unseen image takes part in any choice. Runs whose metrics exist are not repeated, so an
interrupted ablation continues where it stopped.
"""

import argparse
from dataclasses import asdict
import json
from pathlib import Path
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from training import train
from training.synthetic import (
    build_synthetic_dataset, META_FILE, SETTINGS, SyntheticConfig, WORLD_SCALES)

TRAINING_CONFIGS: Dict[str, List[str]] = {
    'ce_only': ['use_proto_loss=false', 'use_pixel_loss=false'],
    'proto_object': ['use_proto_loss=true', 'part_prototypes=false', 'use_pixel_loss=false'],
    'proto_part': ['use_proto_loss=true', 'part_prototypes=true', 'use_pixel_loss=false'],
    'full': ['use_proto_loss=true', 'part_prototypes=true', 'use_pixel_loss=true'],
}
# (row title, training configuration, map scored); letters as in the paper's Table 2
ROWS = (('a: CE only', 'ce_only', 'none'),
        ('b: CE + calibration', 'ce_only', 'clip'),
        ('c: + object-level prototype loss', 'proto_object', 'none'),
        ('f: + part-level selective prototype loss', 'proto_part', 'none'),
        ('h: + pixel loss', 'full', 'none'),
        ('i: + test-time calibration', 'full', 'clip'))
METRICS = ('kld', 'sim', 'nss')


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model-config', default='config/model_synthetic.yaml')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--out', default='outputs/ablation')
    parser.add_argument('--data-seed', type=int, default=0, help='synthetic data set seed')
    parser.add_argument('--train-per-object', type=int, default=16)
    parser.add_argument('--test-per-object', type=int, default=10)
    parser.add_argument('--scale', choices=sorted(WORLD_SCALES), default='v3',
                        help='object sizes of the synthetic world (v2: the old world)')
    parser.add_argument('--configs', nargs='+', default=list(TRAINING_CONFIGS),
                        choices=list(TRAINING_CONFIGS), help='training configurations to run')
    parser.add_argument('--json', help='write the table and every run here')
    parser.add_argument('--sheets-dir', help='copy the seed-0 contact sheets here')
    parser.add_argument('--seen-only', action='store_true',
                        help='skip scoring each run on the Unseen test set')
    parser.add_argument('--collect-only', action='store_true',
                        help='train nothing: tabulate the runs that have finished')
    parser.add_argument('train_overrides', nargs='*',
                        help='extra TrainConfig key=value overrides for every run')
    return parser


def ensure_dataset(root: Path, config: SyntheticConfig) -> None:
    """Build both settings unless they exist with the same generator settings."""
    for setting in SETTINGS:
        meta_path = root / setting / META_FILE
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            wanted = json.loads(json.dumps(asdict(config)))  # tuples as the meta's lists
            if meta.get('config') == {**meta.get('config', {}), **wanted}:
                continue
        build_synthetic_dataset(root, config, overwrite=True, setting=setting)


def score_unseen(run_dir: Path, data_root: Path) -> dict:
    """Score a run's ``best.pt`` on every Unseen test image; cached in metrics_unseen.json."""
    path = run_dir / 'metrics_unseen.json'
    if not path.is_file():
        from affordance_grounding.model.checkpoint import load_grounder
        import torch
        from training.data import layout_for_model, TestDataset
        from training.evaluate import (
            evaluate_features, extract_test_features, summaries_to_dict, write_contact_sheet)

        grounder = load_grounder(str(run_dir / 'best.pt'))
        dataset = TestDataset(layout_for_model(str(data_root), 'Unseen', grounder.config))
        features = extract_test_features(grounder, dataset, torch.device('cpu'))
        report = {'maps': summaries_to_dict(evaluate_features(grounder, features)),
                  'report_images': len(features)}
        path.write_text(json.dumps(report, indent=2))
        step = max(1, len(features) // 8)
        write_contact_sheet(run_dir / 'contact_sheet_unseen.png', grounder, features,
                            list(range(0, len(features), step))[:8])
    return {'metrics': json.loads(path.read_text())}


def run_training(out_dir: Path, overrides: Sequence[str]) -> dict:
    """Train one head unless ``out_dir/metrics.json`` exists; return the metrics and time."""
    metrics_path = out_dir / 'metrics.json'
    timing_path = out_dir / 'wall_time_s.txt'
    if not metrics_path.is_file():
        if out_dir.exists():
            shutil.rmtree(out_dir)  # an interrupted run restarts from scratch
        started = time.perf_counter()
        code = train.main([*overrides, f'out_dir={out_dir}'])
        if code != 0:
            raise RuntimeError(f'training into {out_dir} failed with exit code {code}')
        timing_path.write_text(f'{time.perf_counter() - started:.1f}\n')
    wall_s = float(timing_path.read_text()) if timing_path.is_file() else float('nan')
    return {'metrics': json.loads(metrics_path.read_text()), 'wall_s': wall_s}


MAP_NAMES = {'none': 'map 1', 'clip': 'map 2'}


def every_config_and_map() -> Tuple[Tuple[str, str, str], ...]:
    """Rows for every training configuration scored both without and with calibration."""
    return tuple((f'{name}, {MAP_NAMES[map_name]}', name, map_name)
                 for name in TRAINING_CONFIGS for map_name in MAP_NAMES)


def summarise(runs: Dict[str, Dict[int, dict]],
              rows: Sequence[Tuple[str, str, str]] = ROWS) -> List[dict]:
    """Mean and sample standard deviation of every row's metrics over the seeds."""
    table = []
    for title, config_name, map_name in rows:
        if config_name not in runs:
            continue
        per_seed = {seed: run['metrics']['maps'][map_name]['mean']
                    for seed, run in runs[config_name].items()}
        row = {'row': title, 'training': config_name, 'map': map_name,
               'seeds': sorted(per_seed)}
        for metric in METRICS:
            values = np.array([per_seed[seed][metric] for seed in sorted(per_seed)])
            row[metric] = {'mean': float(values.mean()),
                           'std': float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                           'per_seed': values.tolist()}
        table.append(row)
    return table


def compare_paired(runs: Dict[str, Dict[int, dict]], before: str, after: str,
                   map_name: str = 'none') -> Dict[str, dict]:
    """Paired comparison of two configurations over the seeds both have run.

    The seed fixes the head initialisation and the data order, so the per-seed difference
    removes the part of the seed noise both runs share; ``paired_t`` is its mean over its
    standard error (sample sd / sqrt(n)).
    """
    seeds = sorted(set(runs.get(before, {})) & set(runs.get(after, {})))
    result = {'seeds': seeds}
    for metric in METRICS:
        pair = np.array([[runs[name][seed]['metrics']['maps'][map_name]['mean'][metric]
                          for name in (before, after)] for seed in seeds])  # (n, 2)
        diff = pair[:, 1] - pair[:, 0]
        sd = float(diff.std(ddof=1)) if len(seeds) > 1 else float('nan')
        result[metric] = {'before_per_seed': pair[:, 0].tolist(),
                          'after_per_seed': pair[:, 1].tolist(),
                          'paired_diff_mean': float(diff.mean()) if len(seeds) else float('nan'),
                          'paired_diff_std': sd,
                          'paired_t': float(diff.mean() / (sd / len(seeds) ** 0.5))
                          if len(seeds) > 1 and sd > 0 else float('nan'),
                          'after_lower': int((diff < 0).sum())}
    return result


def format_rows(table: List[dict]) -> str:
    """Markdown table: one row per ablation row, mean +- std per metric."""
    lines = ['| row | KLD (lower better) | SIM | NSS |', '|---|---|---|---|']
    for row in table:
        cells = [f"{row[metric]['mean']:.3f} ± {row[metric]['std']:.3f}" for metric in METRICS]
        lines.append(f"| {row['row']} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Build the data, run every (configuration, seed), print and write the table."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    data_root = out / 'data'
    if not args.collect_only:
        ensure_dataset(data_root, SyntheticConfig.at_scale(
            args.scale, seed=args.data_seed, train_per_object=args.train_per_object,
            test_per_object=args.test_per_object))
    common = ['data_root=' + str(data_root), 'split=Seen',
              'model_config=' + args.model_config, 'device=cpu', 'workers=0',
              *args.train_overrides]
    runs: Dict[str, Dict[int, dict]] = {}
    unseen: Dict[str, Dict[int, dict]] = {}
    for seed in args.seeds:  # seed-major: an interrupted ablation has every row for some seeds
        for config_name in args.configs:
            run_dir = out / config_name / f'seed{seed}'
            if args.collect_only and not (run_dir / 'metrics.json').is_file():
                continue
            runs.setdefault(config_name, {})[seed] = run_training(
                run_dir, [*common, *TRAINING_CONFIGS[config_name], f'seed={seed}'])
            if not args.seen_only and (run_dir / 'best.pt').is_file():
                unseen.setdefault(config_name, {})[seed] = score_unseen(run_dir, data_root)
            print(f'{config_name} seed {seed}: {runs[config_name][seed]["wall_s"]:.0f} s',
                  flush=True)
            if args.sheets_dir and seed == args.seeds[0]:
                Path(args.sheets_dir).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run_dir / 'contact_sheet.png',
                                Path(args.sheets_dir) / f'ablation_{config_name}.png')
    table = summarise(runs)
    unseen_table = summarise(unseen)
    print('Seen\n' + format_rows(table))
    if unseen_table:
        print('Unseen\n' + format_rows(unseen_table))
    for setting, setting_runs in (('Seen', runs), ('Unseen', unseen)):
        paired = compare_paired(setting_runs, 'proto_object', 'proto_part')['kld']
        if len(paired['before_per_seed']) > 1:
            print(f"{setting} c -> f KLD, paired over {len(paired['before_per_seed'])} seeds: "
                  f"{paired['paired_diff_mean']:+.3f} (t = {paired['paired_t']:.2f})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            'settings': dict(vars(args)),
            'table': table,
            'unseen_table': unseen_table,
            'by_config': summarise(runs, every_config_and_map()),
            'paired_c_f': {'Seen': compare_paired(runs, 'proto_object', 'proto_part'),
                           'Unseen': compare_paired(unseen, 'proto_object', 'proto_part')},
            'runs': {name: {str(seed): run for seed, run in seeds.items()}
                     for name, seeds in runs.items()},
            'unseen_runs': {name: {str(seed): run for seed, run in seeds.items()}
                            for name, seeds in unseen.items()}}, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
