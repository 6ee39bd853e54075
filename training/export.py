r"""Command line: export a model bundle to ONNX (fp32, fp16 or int8), checked against PyTorch.

    python -m training.export --checkpoint outputs/train/best.pt --out model.onnx \
        [--calibration clip] [--opset 20] [--precision fp32|fp16|int8] \
        [--tensorrt-engine model.engine] [--text-tower]
    python -m training.export --onnx model.onnx --out model_int8.onnx --precision int8 \
        [--int8-method dynamic|static] [--int8-images TRAIN_IMAGES_DIR]

This module parses and calls; the work is done by training/graph_export.py (the graph, its
checks and parity with PyTorch), training/quantize.py (``--precision int8``: the backbone
MatMuls quantized for ONNX Runtime on the CPU, gated on per-map cosine against fp32; ``--onnx``
starts from an existing fp32 export) and training/text_tower_export.py (``--text-tower``:
``<out stem>.text.onnx``). The bounds are in training/parity.py.
"""

import argparse
from dataclasses import replace
import logging
from pathlib import Path
import sys
import tempfile
from typing import List, Optional, Tuple

from affordance_grounding.config import CALIBRATIONS, load_model_config
from affordance_grounding.inference.backends import INT8_PRECISION
from affordance_grounding.inference.io_spec import (
    BackendUnavailableError, compute_file_sha256, ModelFileError, ONNX_OPSET, PRECISIONS)
from affordance_grounding.model.checkpoint import CheckpointError, load_grounder
from affordance_grounding.model.factory import build_grounder
from affordance_grounding.model.grounding import AffordanceGrounder
import torch
from training.graph_export import export_onnx, ExportOptions, format_report
from training.parity import ExportError, FP32_ATOL, INT8_MIN_COSINE
from training.quantize import (
    format_quantize_report, list_image_files, METHODS, quantize_onnx, QuantizeOptions)
from training.text_tower_export import export_text_tower


def export_int8(grounder: AffordanceGrounder, out_path: str, options: ExportOptions,
                quantize: QuantizeOptions, source_sha256: str = '') -> None:
    """Export fp32 into a temporary folder beside ``out_path``, quantize it, print both reports.

    The fp32 intermediate never takes a name next to the result (a user's own ``x.fp32.onnx``
    there is left alone) and is removed whatever happens.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f'.{out.stem}.') as folder:
        fp32_path = Path(folder) / f'{out.stem}.fp32.onnx'
        report = export_onnx(grounder, str(fp32_path), replace(options, precision='fp32'),
                             source_sha256)
        print(format_report(report, kept=False))
        print(format_quantize_report(quantize_onnx(str(fp32_path), out_path, quantize)))


class DeprecatedOption(argparse.Action):
    """An old option spelling: stores into the new option's ``dest`` and says it is old."""

    def __init__(self, option_strings, dest, replacement: str, **kwargs):
        """Hide the old spelling from ``--help``; ``replacement`` names the new one."""
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.replacement = replacement

    def __call__(self, parser, namespace, values, option_string=None):
        """Store the value and print one warning line on stderr."""
        print(f'warning: {option_string} is deprecated; use {self.replacement}', file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_int8_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the int8 options (training/quantize.py); all of them start with ``--int8-``."""
    group = parser.add_argument_group('int8 (ONNX Runtime CPU)')
    group.add_argument('--int8-method', default='dynamic', choices=METHODS,
                       help='dynamic: weights int8, activations at run time; static: QDQ '
                            'calibrated on --int8-images')
    group.add_argument('--int8-images', metavar='DIR',
                       help='folder of training images (searched recursively): the static '
                            'method calibrates its activation ranges on them and the parity '
                            'gate runs on held-out ones (not the heatmap --calibration)')
    group.add_argument('--int8-calibration-count', type=int, default=16, metavar='N',
                       help='images of --int8-images used to calibrate (static)')
    group.add_argument('--int8-min-cosine', type=float, default=INT8_MIN_COSINE,
                       help='parity gate: smallest per-map cosine of cam and affinity vs fp32')
    group.add_argument('--calibration-data', dest='int8_images', action=DeprecatedOption,
                       replacement='--int8-images')
    group.add_argument('--calibration-count', dest='int8_calibration_count', type=int,
                       action=DeprecatedOption, replacement='--int8-calibration-count')


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--checkpoint', help='model bundle (.pt)')
    source.add_argument('--config', help='model config YAML: random/untrained weights (tests)')
    source.add_argument('--onnx', help='an fp32 ONNX export to quantize (--precision int8)')
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument('--calibration', default='clip', choices=CALIBRATIONS,
                        help='which calibrated heatmap the graph outputs as affordance '
                             '(docs/method.md); unrelated to int8 calibration (--int8-images)')
    parser.add_argument('--opset', type=int, default=ONNX_OPSET,
                        help='ONNX opset; above 20 TensorRT 10.3 (JetPack 6) cannot parse it')
    parser.add_argument('--skip-tensorrt-check', action='store_true',
                        help='allow graphs TensorRT 10.3 cannot parse (ONNX Runtime only)')
    parser.add_argument('--precision', default='fp32', choices=PRECISIONS + (INT8_PRECISION,))
    add_int8_arguments(parser)
    parser.add_argument('--fp16', action='store_true', help='same as --precision fp16')
    parser.add_argument('--atol', type=float, default=FP32_ATOL, help='fp32 parity tolerance')
    parser.add_argument('--seed', type=int, default=0, help='seed for --config weights')
    parser.add_argument('--tensorrt-engine', help='also build a TensorRT engine here')
    parser.add_argument('--max-batch', type=int, default=8, help='engine profile max batch')
    parser.add_argument('--text-tower', action='store_true',
                        help='also write <out stem>.text.onnx beside --out, the CLIP text '
                             'tower that maps free action phrases to labels (large; off by '
                             'default)')
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse option combinations that cannot work, before any slow step.

    Raises:
        ValueError: With the reason.
    """
    if args.fp16:
        args.precision = 'fp16'
    if args.onnx and args.precision != INT8_PRECISION:
        raise ValueError('--onnx is the fp32 source of --precision int8')
    if args.tensorrt_engine and args.precision == INT8_PRECISION:
        raise ValueError('an int8 graph is for ONNX Runtime on the CPU; build engines from an '
                         'fp32 or fp16 export')
    if args.text_tower and args.onnx:
        raise ValueError('--text-tower needs the model (--checkpoint or --config), not --onnx')


def export_options(args: argparse.Namespace) -> ExportOptions:
    """Return the graph-export settings of the command line."""
    return ExportOptions(calibration=args.calibration, opset=args.opset,
                         precision=args.precision, atol=args.atol,
                         check_tensorrt=not args.skip_tensorrt_check)


def quantize_options(args: argparse.Namespace) -> QuantizeOptions:
    """Return the int8 settings of the command line (lists the image folder)."""
    images = tuple(str(path) for path in list_image_files(args.int8_images)) \
        if args.int8_images else ()
    return QuantizeOptions(method=args.int8_method, calibration_images=images,
                           calibration_count=args.int8_calibration_count,
                           min_cosine=args.int8_min_cosine, seed=args.seed)


def load_source(args: argparse.Namespace) -> Tuple[AffordanceGrounder, str]:
    """Return (grounder, bundle SHA-256 or '') for the chosen model source."""
    if args.checkpoint:
        return load_grounder(args.checkpoint), compute_file_sha256(args.checkpoint)
    torch.manual_seed(args.seed)
    return build_grounder(load_model_config(args.config)), ''


def build_engine(onnx_path: str, engine_path: str, precision: str, max_batch: int) -> None:
    """Build (or reuse) the TensorRT engine of an export and print where it is."""
    from affordance_grounding.inference.engine_build import EngineBuildOptions, ensure_engine

    build = EngineBuildOptions(precision=precision, max_batch=max_batch)
    print(f'engine: {ensure_engine(onnx_path, engine_path, options=build)}')


def write_text_tower(grounder: AffordanceGrounder, model_path: str) -> None:
    """Write ``<model stem>.text.onnx`` beside the model and print where it is."""
    from affordance_grounding.inference.text_encoder import text_model_path

    path = export_text_tower(grounder.config, str(text_model_path(model_path)))
    print(f'text tower: {path} ({path.stat().st_size / 2**20:.1f} MiB)')


def run_export(args: argparse.Namespace) -> None:
    """Do what the checked arguments ask: export or quantize, then the optional extras."""
    if args.tensorrt_engine:  # before the export: a missing TensorRT fails in a second
        from affordance_grounding.inference.engine_build import probe_target

        probe_target()
    if args.onnx:
        print(format_quantize_report(quantize_onnx(args.onnx, args.out, quantize_options(args))))
        return
    options = export_options(args)
    quantize = quantize_options(args) if args.precision == INT8_PRECISION else None
    grounder, source_sha256 = load_source(args)
    if quantize is not None:
        export_int8(grounder, args.out, options, quantize, source_sha256)
    else:
        print(format_report(export_onnx(grounder, args.out, options, source_sha256)))
    if args.text_tower:
        write_text_tower(grounder, args.out)
    if args.tensorrt_engine:
        build_engine(args.out, args.tensorrt_engine, args.precision, args.max_batch)


def main(argv: Optional[List[str]] = None) -> int:
    """Export (and optionally build an engine); returns a process exit code."""
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    logging.getLogger('affordance_grounding').setLevel(logging.INFO)
    logging.getLogger('training').setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args)
        run_export(args)
    except (CheckpointError, ExportError, FileNotFoundError, ModelFileError,
            BackendUnavailableError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
