"""``affordance_bag``: run the affordance model over a recorded rosbag2, offline.

    affordance_bag INPUT_BAG --model MODEL [--out OUTPUT_BAG] [--image-topic TOPIC]
        [--action hold] [--action-topic /affordance/action]
        [--depth-topic TOPIC --camera-info-topic TOPIC] [--device auto|cpu|cuda]
        [--batch 8] [--storage mcap|sqlite3] [--png-dir DIR] [--video FILE.mp4]

Writes a new bag (default ``<INPUT_BAG>_affordance``) with the inputs and the node's outputs
(heatmap, grasp_mask, overlay, and with depth grasp_point and markers) under the node's
topic names, each carrying its input image's header. No ROS installation is needed.

Exit status: 0 frames were written; 2 a user error (one line: bag, topic, model, output,
``--action``); 3 the run finished but wrote no frame (the line after the summary says what to
pass, e.g. ``--action``); 1 an internal error; 130 interrupted (nothing written).
"""

import argparse
import logging
from pathlib import Path
import sys
from typing import List, Optional

from affordance_grounding.bag.output import BagOutputError, STORAGES
from affordance_grounding.bag.processing import BagJob, COPY_CHOICES, run_bag
from affordance_grounding.bag.reading import BagInputError, InputTopics
from affordance_grounding.inference.backends import MODEL_LOAD_ERRORS
from affordance_grounding.perception.allocator import keep_large_buffers
from affordance_grounding.perception.settings import OutputSettings
from affordance_grounding.vocabulary import DEFAULT_MIN_TEXT_MARGIN

PROG = 'affordance_bag'
USER_ERRORS = (BagInputError, BagOutputError) + MODEL_LOAD_ERRORS
EXIT_USER_ERROR = 2
EXIT_NOTHING_WRITTEN = 3
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """Build the command line (see the module docstring)."""
    description = __doc__.splitlines()[0].replace('``', '')  # reST quotes, not for a terminal
    parser = argparse.ArgumentParser(prog=PROG, description=description)
    parser.add_argument('input', type=Path, help='rosbag2 folder or a .mcap/.db3 file')
    parser.add_argument('--out', type=Path, help='output bag (default: INPUT_affordance)')
    parser.add_argument('--model', required=True,
                        help='TensorRT engine (.engine), ONNX (.onnx) or bundle (.pt)')
    topics = parser.add_argument_group('input topics')
    topics.add_argument('--image-topic', help='sensor_msgs/Image or CompressedImage '
                        "(default: the bag's only image topic)")
    topics.add_argument('--action', default='',
                        help='action until the first action message, e.g. hold, "cut with" '
                             "or grab (parsed as the node's action topic does)")
    topics.add_argument('--action-min-text-margin', type=float, default=DEFAULT_MIN_TEXT_MARGIN,
                        help="the node's action_min_text_margin, for phrases mapped by "
                             '<model>.text.onnx (default %(default)s)')
    topics.add_argument('--action-topic', help='std_msgs/String actions, applied in time '
                        'order (default: /affordance/action when the bag has it)')
    topics.add_argument('--depth-topic', help='colour-aligned depth (16UC1 mm or 32FC1 m)')
    topics.add_argument('--camera-info-topic', help='CameraInfo of the colour camera')
    topics.add_argument('--sync-slop', type=float, default=0.05,
                        help='largest colour-depth stamp difference, seconds (default 0.05)')
    model = parser.add_argument_group('model')
    model.add_argument('--backend', default='auto',
                       choices=('auto', 'tensorrt', 'torch', 'onnxruntime'))
    model.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    model.add_argument('--batch', type=int,
                       help='frames per model call (default: 8 on a GPU, 1 on the CPU)')
    model.add_argument('--no-overlap', action='store_true',
                       help='do not read and decode the next batch while the model runs')
    model.add_argument('--heatmap-resolution', default='input', choices=('input', 'model'))
    model.add_argument('--mask-threshold', type=float, default=0.5)
    output = parser.add_argument_group('output')
    output.add_argument('--storage', default='mcap', choices=tuple(STORAGES))
    output.add_argument('--output-prefix', default='/affordance',
                        help='namespace of the output topics (default /affordance)')
    output.add_argument('--inputs', default='all', choices=COPY_CHOICES,
                        help='input topics copied to the output (default all)')
    output.add_argument('--png-dir', type=Path, help='also write the overlays as PNGs here')
    output.add_argument('--video', type=Path, help='also write the overlays as an MP4')
    output.add_argument('--video-fps', type=float,
                        help="MP4 frame rate (default: the image topic's rate)")
    output.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    output.add_argument('--no-progress', action='store_true', help='no progress bar')
    output.add_argument('--verbose', action='store_true',
                        help='log backend selection; show tracebacks of internal errors')
    return parser


def to_job(args: argparse.Namespace) -> BagJob:
    """Turn parsed arguments into a job."""
    output = args.out or args.input.with_name(f'{args.input.name.split(".")[0]}_affordance')
    topics = InputTopics(args.image_topic, args.action_topic, args.depth_topic,
                         args.camera_info_topic)
    settings = OutputSettings(heatmap_resolution=args.heatmap_resolution,
                              mask_threshold=args.mask_threshold)
    return BagJob(input_path=args.input, output_path=output, model_path=args.model,
                  topics=topics, action=args.action, backend=args.backend, device=args.device,
                  batch_size=args.batch, storage=args.storage, output_prefix=args.output_prefix,
                  copy_inputs=args.inputs, settings=settings, sync_slop_s=args.sync_slop,
                  png_dir=args.png_dir, video_path=args.video, video_fps=args.video_fps,
                  overwrite=args.overwrite, progress=not args.no_progress,
                  overlap=not args.no_overlap,
                  action_min_text_margin=args.action_min_text_margin)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse, run, print the summary; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=f'{PROG}: %(message)s')
    job = to_job(args)
    keep_large_buffers()  # frame-sized buffers reused, as in the node (perception/allocator.py)
    try:
        summary = run_bag(job)
    except USER_ERRORS as error:
        print(f'{PROG}: error: {error}', file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f'{PROG}: interrupted; nothing was written to {job.output_path}', file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: B902 - one line, not a traceback (--verbose shows it)
        if args.verbose:
            raise
        print(f'{PROG}: error: {error!r}; nothing was written to {job.output_path} '
              '(--verbose shows the traceback)', file=sys.stderr)
        return 1
    print(summary.describe(job.output_path, with_3d=job.topics.depth is not None))
    if summary.frames_out == 0:
        print(f'{PROG}: error: no frame was written: {summary.explain_nothing_written()}',
              file=sys.stderr)
        return EXIT_NOTHING_WRITTEN
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
