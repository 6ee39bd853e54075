"""Procedurally drawn stand-in for AGD20K, written in the AGD20K directory layout.

Objects are built from distinctly coloured and textured parts (a knife is a handle and a
blade, a cup a handle, a body and a rim, ...) and every affordance acts on one part of each
object it applies to (``cut_with`` -> knife blade, ``hold`` -> knife handle or cup handle).
The tree written under ``<out>/Seen`` is::

    trainset/egocentric/<affordance>/<object>/<object>_<index>.jpg   object on clutter
    trainset/exocentric/<affordance>/<object>/<object>_<index>.jpg   same plus a drawn actor
    testset/egocentric/<affordance>/<object>/<object>_<index>.jpg
    testset/GT/<affordance>/<object>/<object>_<index>.png            blurred acting-part mask
    synthetic_meta.json                                              labels, parts, counts

Each image comes from its own random generator seeded with ``(seed, split, view, affordance,
object, index)``: a build is byte-identical for a given seed, and any single item can be
re-rendered together with its part masks (:func:`render_item`).

Usage::

    python -m training.synthetic --out /tmp/agd_synth --seed 0
"""

import argparse
from dataclasses import asdict, dataclass
import json
import math
from pathlib import Path
import shutil
import sys
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

SPLIT = 'Seen'
SPLIT_DIRS = ('trainset', 'testset')
VIEWS = ('egocentric', 'exocentric')
META_FILE = 'synthetic_meta.json'
FIXED_POINT_SHIFT = 4  # sub-pixel bits for cv2.fillPoly

# A shape is ('rect', x0, y0, x1, y1), ('poly', points) or ('ring', cx, cy, r_outer, r_inner)
# in object units: an object spans about [-1, 1] in x and y, y pointing down as in images.


@dataclass(frozen=True)
class PartStyle:
    """One part of an object: its look and its geometry in object units.

    Attributes:
        name: Part name, unique within the object (``blade``, ``handle``, ...).
        colour_bgr: Base colour before per-image jitter.
        texture: ``solid``, ``stripes``, ``dots``, ``gradient`` or ``noise``.
        shapes: Filled shapes making up the part, drawn in order.
    """

    name: str
    colour_bgr: Tuple[int, int, int]
    texture: str
    shapes: Tuple[tuple, ...]


@dataclass(frozen=True)
class ObjectKind:
    """An object class: parts in drawing order (later parts occlude earlier ones).

    Attributes:
        parts: The parts, back to front.
        max_rotation_deg: In-plane rotation range (+-) of a random instance.
        mirror: Whether instances may be mirrored left-right.
    """

    parts: Tuple[PartStyle, ...]
    max_rotation_deg: float
    mirror: bool


OBJECTS: Dict[str, ObjectKind] = {
    'knife': ObjectKind(parts=(
        PartStyle('handle', (30, 60, 110), 'stripes', (('rect', -1.0, -0.13, -0.2, 0.13),)),
        PartStyle('blade', (200, 200, 195), 'gradient', (
            ('poly', ((-0.2, -0.16), (0.85, -0.16), (1.0, -0.05), (0.6, 0.16), (-0.2, 0.16))),)),
    ), max_rotation_deg=180.0, mirror=True),
    'scissors': ObjectKind(parts=(
        PartStyle('handles', (40, 40, 200), 'solid', (
            ('ring', -0.62, -0.4, 0.32, 0.19), ('ring', -0.62, 0.4, 0.32, 0.19),
            ('poly', ((-0.4, -0.3), (-0.05, -0.06), (-0.05, 0.06), (-0.45, -0.16))),
            ('poly', ((-0.4, 0.3), (-0.05, 0.06), (-0.05, -0.06), (-0.45, 0.16))))),
        PartStyle('blades', (185, 180, 170), 'gradient', (
            ('poly', ((-0.1, 0.08), (1.0, -0.14), (1.0, -0.04), (-0.1, 0.2))),
            ('poly', ((-0.1, -0.08), (1.0, 0.14), (1.0, 0.04), (-0.1, -0.2))))),
    ), max_rotation_deg=180.0, mirror=False),
    'cup': ObjectKind(parts=(
        PartStyle('handle', (60, 160, 230), 'solid', (('ring', 0.45, 0.0, 0.42, 0.25),)),
        PartStyle('body', (170, 90, 40), 'dots', (
            ('poly', ((-0.5, -0.7), (0.5, -0.7), (0.4, 0.85), (-0.4, 0.85))),)),
        PartStyle('rim', (235, 235, 235), 'solid', (('rect', -0.56, -0.9, 0.56, -0.68),)),
    ), max_rotation_deg=25.0, mirror=True),
    'bottle': ObjectKind(parts=(
        PartStyle('body', (60, 150, 40), 'noise', (
            ('rect', -0.42, -0.25, 0.42, 1.0),
            ('poly', ((-0.42, -0.24), (0.42, -0.24), (0.16, -0.55), (-0.16, -0.55))))),
        PartStyle('neck', (120, 200, 120), 'stripes', (('rect', -0.15, -0.82, 0.15, -0.5),)),
        PartStyle('cap', (30, 30, 210), 'stripes', (('rect', -0.2, -1.0, 0.2, -0.8),)),
    ), max_rotation_deg=30.0, mirror=False),
    'chair': ObjectKind(parts=(
        PartStyle('legs', (30, 50, 80), 'solid', (
            ('rect', -0.62, 0.1, -0.48, 1.0), ('rect', 0.48, 0.1, 0.62, 1.0))),
        PartStyle('back', (60, 90, 150), 'stripes', (('rect', -0.64, -1.0, -0.46, 0.0),)),
        PartStyle('seat', (160, 60, 140), 'dots', (('rect', -0.68, -0.04, 0.68, 0.14),)),
    ), max_rotation_deg=12.0, mirror=True),
}

# Affordance (AGD20K Seen label) -> object -> acting part.
AFFORDANCE_PARTS: Dict[str, Dict[str, str]] = {
    'cut_with': {'knife': 'blade', 'scissors': 'blades'},
    'drink_with': {'cup': 'rim'},
    'hold': {'knife': 'handle', 'cup': 'handle', 'scissors': 'handles'},
    'open': {'bottle': 'cap'},
    'pour': {'bottle': 'neck'},
    'sit_on': {'chair': 'seat'},
}
# Body part of the exocentric actor touching the acting part (default: the hand).
BODY_CONTACT: Dict[str, str] = {'sit_on': 'hips'}


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate.

    Attributes:
        seed: Root seed; the same seed gives byte-identical files.
        train_per_object: Egocentric and exocentric training images per (affordance, object).
        test_per_object: Test images (with GT) per (affordance, object).
        image_size: Side of the square images in pixels.
        jpeg_quality: Fixed JPEG quality of the written images.
        gt_blur_sigma_frac: Gaussian sigma of the GT heat map as a fraction of image_size.
    """

    seed: int = 0
    train_per_object: int = 4
    test_per_object: int = 2
    image_size: int = 256
    jpeg_quality: int = 90
    gt_blur_sigma_frac: float = 1.0 / 64.0

    def __post_init__(self) -> None:
        """Reject values that cannot produce a usable data set."""
        checks = {'seed': self.seed >= 0, 'train_per_object': self.train_per_object >= 1,
                  'test_per_object': self.test_per_object >= 1,
                  'image_size': self.image_size >= 64,
                  'jpeg_quality': 1 <= self.jpeg_quality <= 100,
                  'gt_blur_sigma_frac': 0.0 < self.gt_blur_sigma_frac < 0.5}
        for name, is_valid in checks.items():
            if not is_valid:
                raise ValueError(f'SyntheticConfig.{name}={getattr(self, name)!r} is out of range '
                                 f'(seed >= 0, counts >= 1, image_size >= 64, '
                                 f'jpeg_quality 1..100, 0 < gt_blur_sigma_frac < 0.5)')


@dataclass(frozen=True)
class ItemSpec:
    """Identity of one generated image; also its random seed.

    Attributes:
        split: ``trainset`` or ``testset``.
        view: ``egocentric`` or ``exocentric`` (test items are egocentric).
        affordance: Affordance label (folder name).
        object_name: Object class (folder name).
        index: Image index within its folder.
    """

    split: str
    view: str
    affordance: str
    object_name: str
    index: int

    @property
    def stem(self) -> str:
        """File name without extension, e.g. ``knife_000003``."""
        return f'{self.object_name}_{self.index:06d}'

    def image_path(self, root: Path) -> Path:
        """Return the image path under the output root ``root``."""
        return (Path(root) / SPLIT / self.split / self.view / self.affordance
                / self.object_name / f'{self.stem}.jpg')

    def gt_path(self, root: Path) -> Path:
        """Return the GT heat-map path under the output root ``root`` (test items only)."""
        return (Path(root) / SPLIT / 'testset' / 'GT' / self.affordance / self.object_name
                / f'{self.stem}.png')


@dataclass(frozen=True)
class RenderedItem:
    """One drawn image with the ground truth used to draw it.

    Attributes:
        image_bgr: ``(S, S, 3)`` uint8 image, BGR as written by OpenCV.
        part_masks: Part name -> ``(S, S)`` bool mask of its visible object pixels (drawn
            before any actor, so an exocentric hand does not cut into it).
        acting_part: Name of the part the affordance acts on.
        gt: ``(S, S)`` uint8 heat map (peak 255) for egocentric items, None for exocentric.
        contact_xy: Pixel ``(x, y)`` of the acting part that the actor's hand (or hips)
            touches; None for egocentric items.
    """

    image_bgr: np.ndarray
    part_masks: Dict[str, np.ndarray]
    acting_part: str
    gt: Optional[np.ndarray]
    contact_xy: Optional[Tuple[int, int]] = None


@dataclass(frozen=True)
class SyntheticSummary:
    """What :func:`build_synthetic_dataset` wrote.

    Attributes:
        root: Output root (the folder that holds ``Seen``).
        items: Every generated image, in writing order.
        counts: Number of files per kind (``train_egocentric``, ..., ``test_gt``).
        labels: Affordance labels used, sorted.
        objects: Object classes used, sorted.
    """

    root: Path
    items: Tuple[ItemSpec, ...]
    counts: Dict[str, int]
    labels: Tuple[str, ...]
    objects: Tuple[str, ...]


def iter_item_specs(config: SyntheticConfig) -> Iterator[ItemSpec]:
    """Yield every item of the data set in a fixed order.

    Args:
        config: Generation settings.

    Yields:
        Training egocentric and exocentric items, then test items.
    """
    for affordance in sorted(AFFORDANCE_PARTS):
        for object_name in sorted(AFFORDANCE_PARTS[affordance]):
            for view in VIEWS:
                for index in range(config.train_per_object):
                    yield ItemSpec('trainset', view, affordance, object_name, index)
            for index in range(config.test_per_object):
                yield ItemSpec('testset', 'egocentric', affordance, object_name, index)


def render_item(config: SyntheticConfig, spec: ItemSpec) -> RenderedItem:
    """Draw one image (and its GT for egocentric items) deterministically.

    Args:
        config: Generation settings (seed, image size, GT blur).
        spec: Which item to draw.

    Returns:
        The image, the visible part masks, the acting part and the GT heat map.

    Raises:
        ValueError: If the affordance does not act on that object.
    """
    acting_part = AFFORDANCE_PARTS.get(spec.affordance, {}).get(spec.object_name)
    if acting_part is None:
        raise ValueError(f'no acting part for affordance {spec.affordance!r} on object '
                         f'{spec.object_name!r}; valid pairs: {AFFORDANCE_PARTS}')
    rng = np.random.default_rng(_seed_entropy(config.seed, spec))
    size = config.image_size
    image_bgr = _draw_clutter(rng, size)
    part_masks = _draw_object(rng, image_bgr, OBJECTS[spec.object_name])
    if spec.view == 'exocentric':
        object_mask = np.logical_or.reduce(list(part_masks.values()))  # (S, S)
        contact = BODY_CONTACT.get(spec.affordance, 'hand')
        contact_xy = _draw_actor(rng, image_bgr, part_masks[acting_part], object_mask, contact)
        return RenderedItem(image_bgr, part_masks, acting_part, gt=None, contact_xy=contact_xy)
    gt = render_gt(part_masks[acting_part], config.gt_blur_sigma_frac * size)
    return RenderedItem(image_bgr, part_masks, acting_part, gt)


def render_gt(part_mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """Blur a part mask into an AGD20K-style heat map.

    Args:
        part_mask: ``(H, W)`` bool mask of the acting part.
        sigma_px: Gaussian sigma in pixels.

    Returns:
        ``(H, W)`` uint8 heat map with peak 255.

    Raises:
        ValueError: If the mask is empty.
    """
    if not part_mask.any():
        raise ValueError('the acting part is not visible in the image; cannot draw its GT')
    blurred = cv2.GaussianBlur(part_mask.astype(np.float32), (0, 0), sigmaX=sigma_px)
    return np.round(blurred * (255.0 / blurred.max())).astype(np.uint8)


def build_synthetic_dataset(out_dir, config: SyntheticConfig,
                            overwrite: bool = False) -> SyntheticSummary:
    """Write the synthetic data set under ``<out_dir>/Seen``.

    Args:
        out_dir: Output root (str or Path; created if missing).
        config: Generation settings.
        overwrite: Delete an existing ``<out_dir>/Seen`` first instead of failing.

    Returns:
        A summary of what was written.

    Raises:
        FileExistsError: If ``<out_dir>/Seen`` exists and ``overwrite`` is False.
    """
    root = Path(out_dir)
    _prepare_split_dir(root / SPLIT, overwrite)
    items = tuple(iter_item_specs(config))
    jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
    for spec in items:
        rendered = render_item(config, spec)
        _write_image(spec.image_path(root), rendered.image_bgr, jpeg_params)
        if spec.split == 'testset':
            _write_image(spec.gt_path(root), rendered.gt, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    summary = SyntheticSummary(root=root, items=items, counts=_count_items(items),
                               labels=tuple(sorted(AFFORDANCE_PARTS)),
                               objects=tuple(sorted(OBJECTS)))
    meta = _build_meta(config, summary)
    (root / SPLIT / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + '\n')
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point: parse ``argv``, build the data set, print a summary.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        Process exit code (0 on success).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output root; Seen/ is created in it')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train-per-object', type=int, default=4)
    parser.add_argument('--test-per-object', type=int, default=2)
    parser.add_argument('--size', type=int, default=256, help='image side in pixels')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing Seen/')
    args = parser.parse_args(argv)
    config = SyntheticConfig(seed=args.seed, train_per_object=args.train_per_object,
                             test_per_object=args.test_per_object, image_size=args.size)
    start_s = time.perf_counter()
    summary = build_synthetic_dataset(args.out, config, overwrite=args.overwrite)
    elapsed_s = time.perf_counter() - start_s
    counts = ', '.join(f'{name} {count}' for name, count in summary.counts.items())
    print(f'wrote {len(summary.items)} images to {summary.root / SPLIT} in {elapsed_s:.2f} s '
          f'({counts}); labels: {", ".join(summary.labels)}; '
          f'objects: {", ".join(summary.objects)}')
    return 0


def _seed_entropy(seed: int, spec: ItemSpec) -> List[int]:
    """Map an item to the integers that seed its generator (stable across runs)."""
    objects = sorted(OBJECTS)
    return [seed, SPLIT_DIRS.index(spec.split), VIEWS.index(spec.view),
            sorted(AFFORDANCE_PARTS).index(spec.affordance), objects.index(spec.object_name),
            spec.index]


def _draw_clutter(rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw a noisy gradient background covered with random shapes; ``(S, S, 3)`` uint8."""
    colours = rng.uniform(30, 225, (2, 3)).astype(np.float32)  # (2, 3) gradient end colours
    angle = rng.uniform(0, 2 * math.pi)
    coords = np.arange(size, dtype=np.float32) / size
    ys, xs = coords[:, None], coords[None, :]  # (S, 1), (1, S) in [0, 1)
    ramp = 0.5 + 0.5 * np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)))
    image = colours[0] + ramp[..., None] * (colours[1] - colours[0])  # (S, S, 3)
    image += 10.0 * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(8, 16))):
        _draw_random_shape(rng, image, size)
    return image


def _draw_random_shape(rng: np.random.Generator, image: np.ndarray, size: int) -> None:
    """Draw one random circle, rectangle, line or triangle in place."""
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    thickness = -1 if rng.random() < 0.6 else int(rng.integers(2, 6))
    points = rng.integers(0, size, (3, 2))  # (3, 2) x, y
    kind = rng.integers(4)
    if kind == 0:
        radius = int(rng.integers(size // 30, size // 8))
        cv2.circle(image, tuple(int(v) for v in points[0]), radius, colour, thickness, cv2.LINE_AA)
    elif kind == 1:
        corner = points[0] + rng.integers(size // 20, size // 5, 2)
        cv2.rectangle(image, tuple(int(v) for v in points[0]), tuple(int(v) for v in corner),
                      colour, thickness)
    elif kind == 2:
        cv2.line(image, tuple(int(v) for v in points[0]), tuple(int(v) for v in points[1]),
                 colour, max(thickness, 2), cv2.LINE_AA)
    else:
        cv2.fillPoly(image, [points.astype(np.int32)], colour, cv2.LINE_AA)


def _draw_object(rng: np.random.Generator, image: np.ndarray,
                 kind: ObjectKind) -> Dict[str, np.ndarray]:
    """Draw a randomly posed object in place; return its visible part masks."""
    size = image.shape[0]
    scale_px = rng.uniform(0.22, 0.32) * size
    angle = math.radians(rng.uniform(-kind.max_rotation_deg, kind.max_rotation_deg))
    mirror_x = -1.0 if kind.mirror and rng.random() < 0.5 else 1.0
    centre = rng.uniform(0.38, 0.62, 2) * size  # (2,) x, y
    rotation = np.array([[math.cos(angle), -math.sin(angle)],
                         [math.sin(angle), math.cos(angle)]])
    linear = scale_px * rotation @ np.diag([mirror_x, 1.0])  # (2, 2) object units -> pixels
    part_labels = np.zeros((size, size), np.int32)  # 0 = background, i + 1 = part i
    for part_id, part in enumerate(kind.parts, start=1):
        mask = np.zeros((size, size), np.uint8)
        for shape in part.shapes:
            contours = [np.round((c @ linear.T + centre) * 2 ** FIXED_POINT_SHIFT).astype(np.int32)
                        for c in _to_contours(shape)]  # each (K, 2) fixed-point x, y
            cv2.fillPoly(mask, contours, 255, cv2.LINE_8, FIXED_POINT_SHIFT)
        covered_ys, covered_xs = np.nonzero(mask)  # (N,) each
        image[covered_ys, covered_xs] = _draw_texture(rng, part, covered_xs, covered_ys)
        part_labels[covered_ys, covered_xs] = part_id
    return {part.name: part_labels == part_id for part_id, part in enumerate(kind.parts, 1)}


def _to_contours(shape: tuple) -> List[np.ndarray]:
    """Turn a shape description into closed contours ``(K, 2)`` in object units."""
    kind, *values = shape
    if kind == 'rect':
        x0, y0, x1, y1 = values
        return [np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], float)]
    if kind == 'poly':
        return [np.array(values[0], float)]
    if kind == 'ring':  # outer and inner contour: fillPoly leaves the hole empty
        centre_x, centre_y, radius_outer, radius_inner = values
        angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)[:, None]  # (48, 1)
        circle = np.hstack([np.cos(angles), np.sin(angles)])  # (48, 2) unit circle
        centre = np.array([centre_x, centre_y])
        return [centre + circle * radius_outer, centre + circle[::-1] * radius_inner]
    raise ValueError(f'unknown shape kind {kind!r}; expected rect, poly or ring')


def _draw_texture(rng: np.random.Generator, part: PartStyle, xs: np.ndarray,
                  ys: np.ndarray) -> np.ndarray:
    """Return the part's jittered colour and texture at pixels ``(xs, ys)``: ``(N, 3)`` uint8."""
    colour = np.clip(np.array(part.colour_bgr) + rng.integers(-20, 21, 3), 0, 255)  # (3,)
    angle = rng.uniform(0, math.pi)
    along = xs * math.cos(angle) + ys * math.sin(angle)  # (N,) pixels along a direction
    if part.texture == 'stripes':
        shade = 0.7 + 0.3 * (np.sin(2 * math.pi * along / rng.uniform(6, 12)) > 0)
    elif part.texture == 'dots':
        period = float(rng.integers(7, 12))
        dist_sq = (xs % period - period / 2) ** 2 + (ys % period - period / 2) ** 2
        shade = np.where(dist_sq < (period / 4) ** 2, 0.55, 1.0)
    elif part.texture == 'gradient':
        shade = 0.75 + 0.3 * np.sin(2 * math.pi * along / rng.uniform(60, 120))
    elif part.texture == 'noise':
        shade = 1.0 + rng.normal(0.0, 0.12, xs.shape)
    else:
        shade = np.ones(xs.shape)
    return np.clip(shade[..., None] * colour, 0, 255).astype(np.uint8)


def _draw_actor(rng: np.random.Generator, image: np.ndarray, part_mask: np.ndarray,
                object_mask: np.ndarray, contact: str) -> Tuple[int, int]:
    """Draw a person-like figure touching the acting part in place; return the touch pixel."""
    ys, xs = np.nonzero(part_mask)
    points = np.stack([xs, ys], axis=1).astype(float)  # (N, 2) x, y of the part
    touch = points[np.argmin(((points - points.mean(axis=0)) ** 2).sum(axis=1))]  # (2,)
    object_ys, object_xs = np.nonzero(object_mask)
    object_centre = np.array([object_xs.mean(), object_ys.mean()])  # (2,) x, y
    skin = (np.array([110, 150, 200]) * rng.uniform(0.5, 1.2)).clip(0, 255)
    cloth = rng.integers(0, 256, 3)
    unit = image.shape[0] / 256.0  # pose lengths below are pixels at 256 px
    if contact == 'hips':
        shoulder, hip, hand, legs = _plan_seated_pose(rng, touch, unit)
    else:
        shoulder, hip, hand, legs = _plan_reaching_pose(rng, touch, object_centre, unit)
    elbow = (shoulder + hand) / 2 + rng.uniform(-12, 12, 2) * unit
    for start, end, width in legs + [(shoulder, hip, 26), (shoulder, elbow, 10)]:
        _draw_segment(image, start, end, width * unit, cloth)
    _draw_segment(image, elbow, hand, 8 * unit, skin)  # forearm
    _draw_segment(image, hand, hand, 10 * unit, skin)  # hand blob
    head = shoulder + np.array([0.0, -24.0]) * unit
    _draw_segment(image, head, head, 22 * unit, skin)
    return int(touch[0]), int(touch[1])


def _plan_reaching_pose(rng: np.random.Generator, touch: np.ndarray, object_centre: np.ndarray,
                        unit: float) -> tuple:
    """Place a standing figure outside the object whose hand rests on ``touch``."""
    away = touch - object_centre  # (2,) reach in from outside the object
    away_angle = math.atan2(away[1], away[0]) + rng.uniform(-0.7, 0.7)
    reach = rng.uniform(60, 85) * unit
    shoulder = touch + reach * np.array([math.cos(away_angle), math.sin(away_angle)])
    hip = shoulder + np.array([0.0, 85.0]) * unit
    legs = [(hip, hip + np.array([-20.0, 70.0]) * unit, 14),
            (hip, hip + np.array([20.0, 70.0]) * unit, 14)]
    return shoulder, hip, touch, legs


def _plan_seated_pose(rng: np.random.Generator, touch: np.ndarray, unit: float) -> tuple:
    """Place a seated figure whose hips rest on ``touch``; the hand rests beside them."""
    hip = touch
    shoulder = hip + np.array([rng.uniform(-8, 8), -75.0]) * unit
    knee = hip + np.array([rng.choice([-1.0, 1.0]) * 45.0, 0.0]) * unit
    legs = [(hip, knee, 14), (knee, knee + np.array([0.0, 50.0]) * unit, 12)]
    return shoulder, hip, hip + np.array([0.0, -10.0]) * unit, legs


def _draw_segment(image: np.ndarray, start: np.ndarray, end: np.ndarray, width: float,
                  colour: np.ndarray) -> None:
    """Draw a thick round-capped segment (a dot when start == end) in place."""
    colour = tuple(int(c) for c in colour)
    start_px = tuple(int(round(v)) for v in start)
    end_px = tuple(int(round(v)) for v in end)
    thickness = max(int(round(width)), 1)
    cv2.line(image, start_px, end_px, colour, thickness, cv2.LINE_AA)
    cv2.circle(image, end_px, thickness // 2, colour, -1, cv2.LINE_AA)


def _prepare_split_dir(split_dir: Path, overwrite: bool) -> None:
    """Make sure the split folder can be written from scratch."""
    if split_dir.exists():
        if not overwrite:
            raise FileExistsError(f'{split_dir} already exists; choose another --out or pass '
                                  f'--overwrite (overwrite=True) to replace it')
        shutil.rmtree(split_dir)
    split_dir.mkdir(parents=True)


def _write_image(path: Path, image: np.ndarray, params: List[int]) -> None:
    """Write an image with OpenCV, creating its folder; raise if OpenCV fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f'cv2.imwrite could not write {path}')


def _count_items(items: Sequence[ItemSpec]) -> Dict[str, int]:
    """Count the written files per kind."""
    prefixes = {'trainset': 'train', 'testset': 'test'}
    counts = {'train_egocentric': 0, 'train_exocentric': 0, 'test_egocentric': 0}
    for spec in items:
        counts[f'{prefixes[spec.split]}_{spec.view}'] += 1
    counts['test_gt'] = counts['test_egocentric']
    return counts


def _build_meta(config: SyntheticConfig, summary: SyntheticSummary) -> dict:
    """Describe the build in a JSON-serialisable dict (no timestamps, so it is reproducible)."""
    return {
        'generator': 'training.synthetic',
        'split': SPLIT,
        'config': asdict(config),
        'labels': list(summary.labels),
        'objects': list(summary.objects),
        'affordance_parts': AFFORDANCE_PARTS,
        'actor_contact': {label: BODY_CONTACT.get(label, 'hand') for label in summary.labels},
        'object_parts': {name: [part.name for part in kind.parts]
                         for name, kind in OBJECTS.items()},
        'counts': summary.counts,
    }


if __name__ == '__main__':
    sys.exit(main())
