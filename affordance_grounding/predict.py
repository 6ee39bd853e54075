r"""Predict where to act on one photo and write the heatmap overlay as a PNG.

Examples::

    python -m affordance_grounding.predict --checkpoint model.pt --image cup.jpg \\
        --action hold --out hold.png
    python -m affordance_grounding.predict --checkpoint model.onnx --image cup.jpg \\
        --action 'cut with' --out cut.png   # any model file the node takes
    python -m affordance_grounding.predict --config config/model_tiny.yaml \\
        --sample coffee --action drink_with --out demo.png   # random weights, offline
    python -m affordance_grounding.predict --checkpoint model.onnx --image table.jpg \\
        --action 'cut with' --box 120,80,200,150 --box 380,60,90,210 --out table.png
        # each box cut out and run on its own; prints each one's score, the best first
"""

import argparse
from dataclasses import replace
import logging
from pathlib import Path
import sys
from typing import List, Optional, Tuple

from affordance_grounding.config import CALIBRATIONS, load_model_config, ModelConfig
from affordance_grounding.inference.backends import (
    InferenceBackend, MODEL_LOAD_ERRORS, untrained_backend)
from affordance_grounding.inference.selection import BACKEND_NAMES, resolve_device
from affordance_grounding.inference.text_encoder import open_text_fallback
from affordance_grounding.perception.detections import ranked_detections
from affordance_grounding.perception.frame_processor import (
    FrameInput, FrameProcessor, FrameResult)
from affordance_grounding.perception.regions import (
    BOX_FORMAT_HELP, DEFAULT_MAX_REGIONS, MAX_OFFSET_IN_IMAGE_SIDES, parse_box, Region,
    roi_boxes)
from affordance_grounding.perception.settings import (
    load_backend, ModelSettings, OutputSettings, RegionSettings)
from affordance_grounding.vocabulary import (
    ActionCommand, DEFAULT_MIN_TEXT_MARGIN, parse_action_command)
import cv2
import numpy as np
import torch

SAMPLE_PHOTOS = ('coffee', 'chelsea', 'astronaut')
USER_ERRORS = (ValueError, FileNotFoundError) + MODEL_LOAD_ERRORS


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--image', help='image file (any format OpenCV reads)')
    source.add_argument('--sample', choices=SAMPLE_PHOTOS,
                        help='a scikit-image sample photo (ships offline)')
    parser.add_argument('--action', required=True,
                        help="affordance label, e.g. hold ('cut with' and Cut_With also work), "
                             'or a phrase, understood as the node does: synonyms (grasp), and '
                             'with <model>.text.onnx next to the model the CLIP text fallback')
    parser.add_argument('--action-min-text-margin', type=float, default=DEFAULT_MIN_TEXT_MARGIN,
                        help="the node's action_min_text_margin: the text fallback's smallest "
                             'lead of the nearest label over the runner-up')
    parser.add_argument('--out', required=True, help='overlay PNG to write')
    model = parser.add_mutually_exclusive_group()
    model.add_argument('--checkpoint', '--model', dest='checkpoint',
                       help='model file, as the node takes: bundle (.pt), ONNX (.onnx) or '
                            'TensorRT engine (.engine)')
    model.add_argument('--config', help='model config YAML; the head stays untrained')
    parser.add_argument('--backend', default='auto', choices=('auto',) + BACKEND_NAMES,
                        help='inference backend (auto: the fastest one that runs here)')
    parser.add_argument('--calibration', choices=CALIBRATIONS,
                        help='map to show (default clip; ONNX and engines have theirs baked in)')
    parser.add_argument('--device', default='auto',
                        help='auto (CUDA when available, else CPU), cpu, cuda or cuda:N')
    parser.add_argument('--seed', type=int, default=0, help='seed for random initialisation')
    parser.add_argument('--save-heatmap', help='also save the float heatmap as .npy')
    parser.add_argument('--box', action='append', default=[], metavar='x,y,w,h',
                        help=f'an object region (repeatable): {BOX_FORMAT_HELP}; each is cut '
                             'out and run on its own, the heatmap is zero outside them')
    return parser


def read_boxes(texts: List[str], image_hw: Tuple[int, int]) -> Optional[List[Region]]:
    """Parse ``--box`` values and check them against the photo; None without any.

    A box the node would drop as ``bad_roi`` is an error here: one photo, the user's own box.
    """
    if not texts:
        return None
    boxes = []
    for text in texts:
        try:
            box = parse_box(text)
        except ValueError as error:
            raise ValueError(f'--box: {error}') from None
        if roi_boxes(box, image_hw) is None:  # the node would skip the frame (bad_roi)
            raise ValueError(f'--box {text!r} is not inside the {image_hw[1]}x{image_hw[0]} '
                             f'photo (or reaches over {MAX_OFFSET_IN_IMAGE_SIDES:g} photo '
                             'sides away)')
        boxes.append(replace(box, detection_index=len(boxes)))  # echoed by the ranking
    return boxes


def describe_regions(result: FrameResult, texts: List[str]) -> List[str]:
    """One line per ``--box``, the best score for the action first."""
    return [f'  box {texts[index]}: score {score:.3f}'
            for index, score in ranked_detections(result.regions, result.region_scores)]


def read_rgb(args: argparse.Namespace) -> np.ndarray:
    """Read the input photo as (H, W, 3) uint8 RGB."""
    if args.sample:
        try:  # a development dependency (requirements/dev.txt): a robot install may lack it
            import skimage.data
        except ImportError as error:
            raise ValueError(f'--sample needs scikit-image ({error}): pip install scikit-image, '
                             'or pass a photo with --image FILE') from None
        return np.ascontiguousarray(getattr(skimage.data, args.sample)()[..., :3])
    if not Path(args.image).is_file():  # before OpenCV, which logs its own warning line
        raise ValueError(f'cannot read image {args.image}: no such file')
    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'cannot read image {args.image}: missing file or unsupported format')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_model_backend(args: argparse.Namespace) -> Tuple[InferenceBackend, Optional[str]]:
    """Return (loaded backend, untrained_reason or None) for the chosen model source.

    A model file goes through the same backend selection as the node; a model config builds
    an untrained PyTorch model on the resolved device.
    """
    if args.checkpoint:
        settings = ModelSettings(model_path=args.checkpoint, backend=args.backend,
                                 device=args.device, calibration=args.calibration)
        return load_backend(settings), None
    if args.backend not in ('auto', 'torch'):
        raise ValueError(f'--config builds a PyTorch model; --backend {args.backend} needs a '
                         'model file (--checkpoint MODEL.onnx or .engine)')
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    config = load_model_config(args.config) if args.config else ModelConfig()
    backend = untrained_backend(config, device, args.calibration)
    random_backbones = config.clip_weights is None or config.dino_weights is None
    return backend, 'RANDOM WEIGHTS' if random_backbones else 'UNTRAINED HEAD'


def parse_action(args: argparse.Namespace, labels: Tuple[str, ...]) -> ActionCommand:
    """Understand ``--action`` as the node would, with the model file's text fallback if any."""
    matcher = None
    if args.checkpoint:
        fallback = open_text_fallback(args.checkpoint, labels)
        if fallback.failed:
            print(f'warning: {fallback.note}', file=sys.stderr)
        matcher = fallback.matcher
    return parse_action_command(args.action, labels, matcher, args.action_min_text_margin)


def main(argv: Optional[List[str]] = None) -> int:
    """Run one prediction; returns a process exit code."""
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    logging.getLogger('affordance_grounding.model.backbones').setLevel(logging.INFO)  # sources
    args = build_parser().parse_args(argv)
    try:
        rgb = read_rgb(args)
        backend, untrained = load_model_backend(args)
        command = parse_action(args, backend.metadata.labels)
        label, class_index = command.key
        if class_index < 0:
            raise ValueError('--action is empty; give a label such as hold')
        if command.describe() != label:  # a phrase: say what was understood
            print(f'action: {command.describe()}')
        text = label if untrained is None else f'{label} ({untrained}: no meaning)'
        boxes = read_boxes(args.box, rgb.shape[:2])
        frame = FrameInput(rgb, text, class_index, boxes=boxes, zero_size_is_whole_frame=True)
        regions = RegionSettings(max_regions=max(DEFAULT_MAX_REGIONS, len(args.box)))
        outputs = FrameProcessor(backend, regions).process([frame], OutputSettings())[0]
    except USER_ERRORS as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    side_by_side = np.concatenate([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), outputs.overlay],
                                  axis=1)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_path), side_by_side):
        print(f'error: cannot write {out_path}', file=sys.stderr)
        return 2
    if args.save_heatmap:
        np.save(args.save_heatmap, outputs.heatmap)
    if untrained:
        print(f'warning: {untrained}: the heatmap is not a real prediction', file=sys.stderr)
    heatmap = outputs.heatmap
    peak_y, peak_x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    print(f'wrote {out_path}: action={label} backend={backend.describe()} '
          f'peak=(x={peak_x}, y={peak_y}) size={heatmap.shape[1]}x{heatmap.shape[0]}')
    if boxes:
        print('\n'.join([f'regions scored for {label}, best first:']
                        + describe_regions(outputs, args.box)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
