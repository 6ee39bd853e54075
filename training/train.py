r"""Train SelectiveCL: ``python -m training.train --config FILE [key=value ...]``.

Examples::

    python -m training.train --config training/configs/agd20k_seen.yaml
    python -m training.train --config training/configs/synthetic_tiny.yaml epochs=2 device=cpu
    python -m training.train --config training/configs/synthetic_tiny.yaml --resume
    torchrun --nproc_per_node 2 -m training.train --config training/configs/agd20k_seen.yaml

Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves ``last.pt`` and prints the
command that resumes the run.

Ablation rows of the paper: ``use_proto_loss=false use_pixel_loss=false`` (CE only),
``part_prototypes=false`` (object-level prototypes only), ``use_pixel_loss=false``; the
no-calibration row is map 1 of the evaluation output.
"""

import argparse
import json
import logging
from pathlib import Path
import shlex
import shutil
import sys
from typing import List, Optional

from affordance_grounding.inference.io_spec import BackendUnavailableError
from affordance_grounding.model.backbones import WeightsUnavailableError
from affordance_grounding.model.checkpoint import CheckpointError
from training.config import build_train_config
from training.distributed import init_distributed, shutdown_distributed
from training.loop import resolve_device, Trainer, TrainingInterrupted

# Errors of the user's set-up (data, config, weights, checkpoint): one line, no traceback.
SETUP_ERRORS = (ValueError, FileNotFoundError, TypeError, CheckpointError,
                WeightsUnavailableError, BackendUnavailableError)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        description='Train SelectiveCL affordance grounding.',
        epilog='Overrides are TrainConfig fields as key=value (YAML scalars).')
    parser.add_argument('--config', help='training config YAML')
    parser.add_argument('--resume', action='store_true',
                        help='continue from <out_dir>/last.pt (a fresh start when absent)')
    parser.add_argument('--stop-after-steps', type=int, default=0,
                        help='save last.pt and stop after this many steps (for testing)')
    parser.add_argument('overrides', nargs='*', help='key=value overrides')
    return parser


def resume_command(argv: List[str]) -> str:
    """Return the command line that continues this run."""
    kept = [arg for arg in argv if arg != '--resume']
    return ' '.join(['python -m training.train'] + [shlex.quote(arg) for arg in kept]
                    + ['--resume'])


def main(argv: Optional[List[str]] = None) -> int:
    """Run training; returns a process exit code."""
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    logging.getLogger('training').setLevel(logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        config = build_train_config(args.config, args.overrides)
        device_type = resolve_device(config.device).type
    except SETUP_ERRORS as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    context = init_distributed(device_type)
    try:
        out_dir = Path(config.out_dir)
        if not args.resume and (out_dir / 'last.pt').exists() and context.is_main:
            print(f'error: {out_dir}/last.pt exists; pass --resume to continue it or choose '
                  f'another out_dir', file=sys.stderr)
            return 2
        try:
            trainer = Trainer(config, context)
            if args.resume:
                trainer.resume()
        except SETUP_ERRORS as error:
            print(f'error: {error}', file=sys.stderr)
            return 2
        if context.is_main and args.config:
            shutil.copyfile(args.config, out_dir / 'train_config_source.yaml')
        report = trainer.fit(stop_after_steps=args.stop_after_steps)
        if report is not None and context.is_main:
            print(json.dumps({'best_epoch': report['best_epoch'],
                              'report_images': report['report_images']}))
        return 0
    except TrainingInterrupted as stop:
        if context.is_main:
            print(f'stopped by {stop}: saved {stop.checkpoint}; resume with: '
                  f'{resume_command(argv)}', file=sys.stderr)
        return 128 + stop.signal_number
    finally:
        shutdown_distributed(context)


if __name__ == '__main__':
    sys.exit(main())
