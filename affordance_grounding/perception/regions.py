"""Object regions from a detector or one fixed ROI: check, choose, cut out, paste back, score.

The model learned from object-centric photos; in a robot's 640x480 frame an object covers a
few percent and most of the whole-frame heatmap's heat lands off it (docs/benchmarks.md, "Robot
view"). So every object a detector finds is cut out with a margin, run as its own model input
(all regions of a frame in one batch), and its heatmap is pasted back where it came from. Each
region also gets a score for the action, so that a planner can ask which object affords it.

Pure numpy/OpenCV: the node, the bag tool and ``affordance_predict`` share it. Nothing in the
per-frame path raises on a bad box: it is dropped and counted as a problem kind.
"""

from dataclasses import dataclass, replace
import math
import numbers
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

BAD_ROI = 'bad_roi'
TOO_MANY_REGIONS = 'too_many_regions'
PROBLEM_KINDS = (BAD_ROI, TOO_MANY_REGIONS)
DEFAULT_MAX_REGIONS = 8
DEFAULT_ROI_MARGIN = 0.25
# A corner more than this many image sides away is no box for this image: a negative value
# wrapped into an unsigned field (sensor_msgs/RegionOfInterest is uint32) or a unit mix-up.
MAX_OFFSET_IN_IMAGE_SIDES = 4.0
BOX_FORMAT_HELP = ('x,y,w,h: four whole numbers of pixels in the colour image, x, y the '
                   'top-left corner (w or h 0: the whole frame), e.g. 120,80,200,150')

WHOLE_NUMBER = re.compile(r'[0-9]+')  # ASCII only: str.isdigit also accepts '²'

ImageHW = Tuple[int, int]


@dataclass(frozen=True)
class Region:
    """A pixel box in the colour image and what the detector said about it.

    Attributes:
        x: Left edge in pixels (a detector's float before :func:`clip_region`, int after).
        y: Top edge in pixels.
        width: Box width in pixels.
        height: Box height in pixels.
        source_id: The detection's id ('' for a fixed ROI).
        label: The detector's class ('' when unknown).
        score: The detector's confidence (None when unknown).
        detection_index: Position of the detection in its input message (None for an ROI),
            so that an output can echo the detection it came from.
    """

    x: float
    y: float
    width: float
    height: float
    source_id: str = ''
    label: str = ''
    score: Optional[float] = None
    detection_index: Optional[int] = None

    @classmethod
    def from_center(cls, center_x: float, center_y: float, width: float, height: float,
                    **detector) -> 'Region':
        """Build a region from a centre and a size (vision_msgs/BoundingBox2D's form)."""
        return cls(center_x - width / 2.0, center_y - height / 2.0, width, height, **detector)

    @property
    def area(self) -> float:
        """Width times height in square pixels."""
        return self.width * self.height


@dataclass(frozen=True)
class RegionChoice:
    """The regions of one frame that will run, and what was dropped.

    Attributes:
        regions: Clipped regions, the largest first, at most ``max_regions``.
        problems: Problem kind -> count, e.g. ``{'bad_roi': 1, 'too_many_regions': 3}``;
            empty when every box was used.
    """

    regions: Tuple[Region, ...]
    problems: Dict[str, int]


@dataclass(frozen=True)
class CropWindow:
    """The pixels cut out for one region: columns ``x0:x1``, rows ``y0:y1``."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        """Columns in the window."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Rows in the window."""
        return self.y1 - self.y0

    def cut(self, image: np.ndarray) -> np.ndarray:
        """Return the window of an (H, W, ...) image as a view (no copy)."""
        return image[self.y0:self.y1, self.x0:self.x1]


def whole_frame(image_hw: ImageHW) -> Region:
    """Return the region covering the whole image."""
    return Region(0, 0, int(image_hw[1]), int(image_hw[0]))


def clip_region(region: Region, image_hw: ImageHW,
                zero_size_is_whole_frame: bool = False) -> Optional[Region]:
    """Clip a box to the image; None when it is no usable box (a ``bad_roi``).

    Partly outside: clipped to integer pixels that cover it. Width or height 0: the whole
    frame when ``zero_size_is_whole_frame`` (the ``roi`` mode, as sensor_msgs/RegionOfInterest
    documents), else bad. Bad: a non-finite value, a negative size, a corner more than
    :data:`MAX_OFFSET_IN_IMAGE_SIDES` image sides away, nothing left inside the image.

    Args:
        region: The box as received.
        image_hw: (height, width) of the colour image.
        zero_size_is_whole_frame: Whether a zero width or height means the whole frame.

    Returns:
        The clipped region (detector fields kept), or None.
    """
    height, width = image_hw
    values = (region.x, region.y, region.width, region.height)
    if not all(isinstance(value, numbers.Real) and math.isfinite(value) for value in values):
        return None
    if region.width < 0 or region.height < 0:
        return None
    if region.width == 0 or region.height == 0:
        if not zero_size_is_whole_frame:
            return None
        return replace(region, x=0, y=0, width=int(width), height=int(height))
    reach = MAX_OFFSET_IN_IMAGE_SIDES * max(height, width)
    if max(abs(value) for value in values) > reach:
        return None
    x0, y0 = max(math.floor(region.x), 0), max(math.floor(region.y), 0)
    x1 = min(math.ceil(region.x + region.width), int(width))
    y1 = min(math.ceil(region.y + region.height), int(height))
    if x1 <= x0 or y1 <= y0:
        return None
    return replace(region, x=x0, y=y0, width=x1 - x0, height=y1 - y0)


def roi_boxes(roi: Region, image_hw: ImageHW) -> Optional[List[Region]]:
    """Return a fixed ROI as a frame's boxes; None when the frame is to be skipped (bad ROI).

    The rule of the node's ``roi`` mode and ``affordance_bag --roi``: width or height 0 is the
    whole frame, a box wholly outside the image (or wrapped, huge, non-finite) skips the frame.
    """
    return None if clip_region(roi, image_hw, zero_size_is_whole_frame=True) is None else [roi]


def choose_regions(boxes: Iterable[Region], image_hw: ImageHW,
                   max_regions: int = DEFAULT_MAX_REGIONS,
                   zero_size_is_whole_frame: bool = False) -> RegionChoice:
    """Clip every box, drop the bad ones, keep the ``max_regions`` largest; count the rest.

    The largest first because a robot acts on what is near (large in the image), and a
    detector's small boxes are the likeliest to be wrong; equal areas keep the input order.

    Raises:
        ValueError: If ``max_regions`` < 1 (a configuration error, caught at configure).
    """
    check_max_regions(max_regions)
    problems: Dict[str, int] = {}
    usable = []
    for box in boxes:
        clipped = clip_region(box, image_hw, zero_size_is_whole_frame)
        if clipped is None:
            problems[BAD_ROI] = problems.get(BAD_ROI, 0) + 1
        else:
            usable.append(clipped)
    usable.sort(key=lambda region: region.area, reverse=True)  # stable: ties keep input order
    if len(usable) > max_regions:
        problems[TOO_MANY_REGIONS] = len(usable) - max_regions
    return RegionChoice(regions=tuple(usable[:max_regions]), problems=problems)


def check_max_regions(max_regions: int) -> None:
    """Raise ValueError unless ``max_regions`` is a whole number >= 1."""
    if isinstance(max_regions, bool) or not isinstance(max_regions, int) or max_regions < 1:
        raise ValueError(f'max_regions must be a whole number >= 1, got {max_regions!r}')


def check_margin(margin: float) -> None:
    """Raise ValueError unless ``margin`` is a finite fraction >= 0."""
    if not isinstance(margin, numbers.Real) or not math.isfinite(margin) or margin < 0:
        raise ValueError(f'roi_margin must be a finite fraction of the box >= 0, got {margin!r}')


def crop_window(region: Region, image_hw: ImageHW, margin: float = DEFAULT_ROI_MARGIN
                ) -> CropWindow:
    """Return the square window around a clipped region, grown by ``margin`` on each side.

    The window is a square of side ``max(w, h) * (1 + 2 * margin)`` centred on the box, so the
    model's square input keeps the object's aspect (preprocessing squashes any rectangle).
    At the image border the square is shifted inside instead of padded: every pixel the model
    sees is real, where padding would show it flat or mirrored areas it never trained on, and
    the box stays whole inside the window. A square larger than the image shrinks to the
    image's shorter side, and grows along one axis only where the box itself is longer than
    that (the one case where the aspect is not kept).

    Args:
        region: A region returned by :func:`clip_region` (integer pixels inside the image).
        image_hw: (height, width) of the colour image.
        margin: Fraction of the box's longer side added on each side.

    Raises:
        ValueError: If ``margin`` is negative or not finite.
    """
    check_margin(margin)
    height, width = int(image_hw[0]), int(image_hw[1])
    side = math.ceil(max(region.width, region.height) * (1.0 + 2.0 * margin))
    side = min(side, height, width)  # the largest square that fits; the box may exceed it
    x0, x1 = _place_span(region.x, region.width, side, width)
    y0, y1 = _place_span(region.y, region.height, side, height)
    return CropWindow(x0, y0, x1, y1)


def _place_span(start: int, length: int, span: int, limit: int) -> Tuple[int, int]:
    """One axis of :func:`crop_window`: a span centred on the box, inside ``[0, limit)``."""
    span = min(max(span, length), limit)
    centred = round(start + length / 2.0 - span / 2.0)
    lowest, highest = max(0, start + length - span), min(limit - span, start)
    begin = min(max(centred, lowest), highest)  # inside the image, and the box inside it
    return begin, begin + span


def cut_regions(rgb: np.ndarray, regions: Sequence[Region],
                margin: float = DEFAULT_ROI_MARGIN) -> Tuple[List[np.ndarray], List[CropWindow]]:
    """Cut every region's window out of an (H, W, 3) image; returns (views, windows)."""
    windows = [crop_window(region, rgb.shape[:2], margin) for region in regions]
    return [window.cut(rgb) for window in windows], windows


def paste_heatmaps(heatmaps: Sequence[np.ndarray], windows: Sequence[CropWindow],
                   image_hw: ImageHW, weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """Put each region's heatmap back at its window in an input-resolution heatmap.

    Every pixel the model saw keeps its heat (a detector box that misses an end of the object
    still gets it from the margin); pixels outside every window are 0; where windows overlap
    the larger value wins, so one region's cold margin never hides another's object.

    Args:
        heatmaps: One (h, w) map in [0, 1] per window, any size (the model's S x S).
        windows: The windows the maps came from (:func:`crop_window`).
        image_hw: (height, width) of the colour image.
        weights: Optional factor in [0, 1] per map. Each map is min-maxed over its own crop,
            so unweighted every region shows a hot spot; :func:`relative_scores` as weights
            keeps the best region's heat at 1 and dims the others by their score.

    Returns:
        (H, W) float32 heatmap.

    Raises:
        ValueError: If the counts differ.
    """
    weights = [1.0] * len(heatmaps) if weights is None else list(weights)
    if not len(heatmaps) == len(windows) == len(weights):
        raise ValueError(f'{len(heatmaps)} heatmaps for {len(windows)} windows and '
                         f'{len(weights)} weights')
    canvas = np.zeros((int(image_hw[0]), int(image_hw[1])), np.float32)
    for heatmap, window, weight in zip(heatmaps, windows, weights):
        resized = cv2.resize(np.asarray(heatmap, np.float32), (window.width, window.height),
                             interpolation=cv2.INTER_LINEAR)  # (h, w)
        if weight != 1.0:
            resized *= np.float32(weight)
        target = window.cut(canvas)
        np.maximum(target, resized, out=target)
    return canvas


def relative_scores(scores: Sequence[float]) -> np.ndarray:
    """Scale scores so that the best is 1 (weights for :func:`paste_heatmaps`); all 0 stay 0."""
    values = np.asarray(scores, np.float64)
    best = values.max() if values.size else 0.0
    return values / best if best > 0 else np.zeros_like(values)


def affordance_scores(cam: np.ndarray, class_index: int) -> np.ndarray:
    """How strongly each region affords the action: the model's own class probability.

    The head is trained with cross-entropy on the spatial mean of ``cam`` (its class logits),
    so ``softmax(mean(cam))[action]`` is the probability the model gives the action for what
    the region shows. Unlike a raw logit or peak it is comparable between regions: every crop's
    logits are normalised against the other actions of the same crop, so an object whose
    logits are all high (texture, contrast) does not outrank one the action belongs to (on the
    robot-view benchmark the raw mean logit ranks the right object first far less often).

    Args:
        cam: (N, K, G, G) class activation maps of N regions (``GroundingResult.cam``).
        class_index: The action's index among the K labels.

    Returns:
        (N,) float64 scores in [0, 1].

    Raises:
        ValueError: If ``cam`` is not 4-D or the index is out of range.
    """
    cam = np.asarray(cam)
    if cam.ndim != 4 or not 0 <= class_index < cam.shape[1]:
        raise ValueError(f'expected (N, K, G, G) class activation maps and an action index '
                         f'below K, got shape {cam.shape} and index {class_index}')
    logits = cam.astype(np.float64).mean(axis=(2, 3))  # (N, K)
    logits -= logits.max(axis=1, keepdims=True)  # stable softmax
    weights = np.exp(logits)
    return weights[:, class_index] / weights.sum(axis=1)


def rank_by_score(scores: Sequence[float]) -> List[int]:
    """Return the regions' indices, best score first (equal scores keep their order)."""
    return sorted(range(len(scores)), key=lambda index: -float(scores[index]))


def parse_box(text: str) -> Region:
    """Parse ``x,y,w,h`` (``affordance_bag --roi``, ``affordance_predict --box``).

    Raises:
        ValueError: With one line naming the input and the expected form.
    """
    fields = [field.strip() for field in str(text).split(',')]
    if len(fields) != 4 or not all(WHOLE_NUMBER.fullmatch(field) for field in fields):
        raise ValueError(f'box {text!r} is not {BOX_FORMAT_HELP}')
    x, y, width, height = (int(field) for field in fields)
    return Region(x, y, width, height)
