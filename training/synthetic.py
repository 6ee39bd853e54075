"""Procedurally drawn stand-in for AGD20K, written in the AGD20K directory layout.

Objects are built from distinctly coloured and textured parts (a knife is a handle and a
blade, a cup a handle, a body and a rim, ...) and every affordance acts on one part of each
object it applies to (``cut_with`` -> knife blade, ``hold`` -> knife handle or cup handle);
the catalogue is :mod:`training.synthetic_catalogue`, the drawing
:mod:`training.synthetic_render`. Two settings are written, as in AGD20K:

* ``Seen``: training and test images of the Seen objects;
* ``Unseen``: the same training images, and test images of object kinds that never appear
  in training (a cleaver, a mug, a jug, a stool), whose analogous parts carry the actions.

The tree written under ``<out>/<setting>`` is::

    trainset/egocentric/<affordance>/<object>/<object>_<index>.jpg   object on clutter
    trainset/exocentric/<affordance>/<object>/<object>_<index>.jpg   same plus a drawn actor
    testset/egocentric/<affordance>/<object>/<object>_<index>.jpg
    testset/GT/<affordance>/<object>/<object>_<index>.png            blurred acting-part mask
    synthetic_meta.json                                              labels, parts, counts

Each image comes from its own random generator seeded with ``(seed, split, view, affordance,
object, index)``: a build is byte-identical for a given seed, the training images of both
settings are the same files, and any single item can be re-rendered together with its part
masks (:func:`render_item`).

Usage::

    python -m training.synthetic --out /tmp/agd_synth --seed 0 --settings Seen Unseen
"""

import argparse
from dataclasses import asdict, dataclass
import json
from pathlib import Path
import shutil
import sys
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from training.synthetic_catalogue import (  # noqa: F401 (re-exported for callers)
    AFFORDANCE_PARTS, BODY_CONTACT, find_acting_part, find_object, LABELS, object_index,
    OBJECTS, pairs_of_test_set, SETTINGS, UNSEEN_AFFORDANCE_PARTS, UNSEEN_OBJECTS)
from training.synthetic_render import draw_actor, draw_clutter, draw_object, render_gt

SPLIT = 'Seen'  # the default setting
# Object long side (egocentric and test, exocentric) as a fraction of the image side, per
# version of the world. v2 drew every object at 0.44-0.64, where a bottle's cap covered about
# one 16-px patch; v3 (the default) draws egocentric objects at AGD20K's object-centric scale.
WORLD_SCALES: Dict[str, Tuple[Tuple[float, float], Tuple[float, float]]] = {
    'v2': ((0.44, 0.64), (0.44, 0.64)),
    'v3': ((0.80, 0.92), (0.56, 0.68)),
}
SPLIT_DIRS = ('trainset', 'testset')
VIEWS = ('egocentric', 'exocentric')
META_FILE = 'synthetic_meta.json'


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
        object_long_side: Range of the object's long side as a fraction of the image side in
            egocentric and test images (AGD20K's are object-centric photos: the object fills
            most of the frame, so its acting part spans several patches).
        exo_long_side: The same range in exocentric images, which must leave room for the
            actor (AGD20K's exocentric images show the person and a smaller object).
    """

    seed: int = 0
    train_per_object: int = 4
    test_per_object: int = 2
    image_size: int = 256
    jpeg_quality: int = 90
    gt_blur_sigma_frac: float = 1.0 / 64.0
    object_long_side: Tuple[float, float] = WORLD_SCALES['v3'][0]
    exo_long_side: Tuple[float, float] = WORLD_SCALES['v3'][1]

    def __post_init__(self) -> None:
        """Reject values that cannot produce a usable data set."""
        checks = {'seed': self.seed >= 0, 'train_per_object': self.train_per_object >= 1,
                  'test_per_object': self.test_per_object >= 1,
                  'image_size': self.image_size >= 64,
                  'jpeg_quality': 1 <= self.jpeg_quality <= 100,
                  'gt_blur_sigma_frac': 0.0 < self.gt_blur_sigma_frac < 0.5,
                  'object_long_side': _is_long_side_range(self.object_long_side),
                  'exo_long_side': _is_long_side_range(self.exo_long_side)}
        for name, is_valid in checks.items():
            if not is_valid:
                raise ValueError(f'SyntheticConfig.{name}={getattr(self, name)!r} is out of range '
                                 f'(seed >= 0, counts >= 1, image_size >= 64, '
                                 f'jpeg_quality 1..100, 0 < gt_blur_sigma_frac < 0.5, '
                                 f'long sides (low, high) with 0.1 <= low <= high <= 1)')

    @classmethod
    def at_scale(cls, scale: str, **kwargs) -> 'SyntheticConfig':
        """Build a config whose object sizes are the named world's (``WORLD_SCALES``)."""
        if scale not in WORLD_SCALES:
            raise ValueError(f'unknown world scale {scale!r}; expected one of '
                             f'{sorted(WORLD_SCALES)}')
        object_long_side, exo_long_side = WORLD_SCALES[scale]
        return cls(object_long_side=object_long_side, exo_long_side=exo_long_side, **kwargs)


@dataclass(frozen=True)
class ItemSpec:
    """Identity of one generated image; also its random seed.

    Attributes:
        split: ``trainset`` or ``testset``.
        view: ``egocentric`` or ``exocentric`` (test items are egocentric).
        affordance: Affordance label (folder name).
        object_name: Object class (folder name).
        index: Image index within its folder.
        setting: ``Seen`` or ``Unseen``: the top folder it is written under (not part of
            its seed, so both settings share their training images).
    """

    split: str
    view: str
    affordance: str
    object_name: str
    index: int
    setting: str = SPLIT

    @property
    def stem(self) -> str:
        """File name without extension, e.g. ``knife_000003``."""
        return f'{self.object_name}_{self.index:06d}'

    def image_path(self, root: Path) -> Path:
        """Return the image path under the output root ``root``."""
        return (Path(root) / self.setting / self.split / self.view / self.affordance
                / self.object_name / f'{self.stem}.jpg')

    def gt_path(self, root: Path) -> Path:
        """Return the GT heat-map path under the output root ``root`` (test items only)."""
        return (Path(root) / self.setting / 'testset' / 'GT' / self.affordance
                / self.object_name / f'{self.stem}.png')


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
        root: Output root (the folder that holds the setting's folder).
        items: Every generated image, in writing order.
        counts: Number of files per kind (``train_egocentric``, ..., ``test_gt``).
        labels: Affordance labels used, sorted.
        objects: Object classes used, sorted.
        setting: ``Seen`` or ``Unseen``.
    """

    root: Path
    items: Tuple[ItemSpec, ...]
    counts: Dict[str, int]
    labels: Tuple[str, ...]
    objects: Tuple[str, ...]
    setting: str = SPLIT


def iter_item_specs(config: SyntheticConfig, setting: str = SPLIT) -> Iterator[ItemSpec]:
    """Yield every item of one setting in a fixed order.

    Args:
        config: Generation settings.
        setting: ``Seen`` or ``Unseen`` (which objects the test set shows).

    Yields:
        Training egocentric and exocentric items (Seen objects), then test items.
    """
    test_table = pairs_of_test_set(setting)
    for affordance in LABELS:
        for object_name in sorted(AFFORDANCE_PARTS[affordance]):
            for view in VIEWS:
                for index in range(config.train_per_object):
                    yield ItemSpec('trainset', view, affordance, object_name, index, setting)
            if setting == 'Seen':
                yield from _test_specs(config, affordance, object_name, setting)
        if setting != 'Seen':
            for object_name in sorted(test_table.get(affordance, {})):
                yield from _test_specs(config, affordance, object_name, setting)


def _test_specs(config: SyntheticConfig, affordance: str, object_name: str,
                setting: str) -> Iterator[ItemSpec]:
    """Test items of one (affordance, object) folder."""
    for index in range(config.test_per_object):
        yield ItemSpec('testset', 'egocentric', affordance, object_name, index, setting)


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
    acting_part = find_acting_part(spec.affordance, spec.object_name)
    rng = np.random.default_rng(_seed_entropy(config.seed, spec))
    size = config.image_size
    image_bgr = draw_clutter(rng, size)
    long_side = config.exo_long_side if spec.view == 'exocentric' else config.object_long_side
    part_masks = draw_object(rng, image_bgr, find_object(spec.object_name), long_side)
    if spec.view == 'exocentric':
        object_mask = np.logical_or.reduce(list(part_masks.values()))  # (S, S)
        contact = BODY_CONTACT.get(spec.affordance, 'hand')
        contact_xy = draw_actor(rng, image_bgr, part_masks[acting_part], object_mask, contact)
        return RenderedItem(image_bgr, part_masks, acting_part, gt=None, contact_xy=contact_xy)
    gt = render_gt(part_masks[acting_part], config.gt_blur_sigma_frac * size)
    return RenderedItem(image_bgr, part_masks, acting_part, gt)


def build_synthetic_dataset(out_dir, config: SyntheticConfig, overwrite: bool = False,
                            setting: str = SPLIT) -> SyntheticSummary:
    """Write one setting of the synthetic data set under ``<out_dir>/<setting>``.

    Args:
        out_dir: Output root (str or Path; created if missing).
        config: Generation settings.
        overwrite: Delete an existing ``<out_dir>/<setting>`` first instead of failing.
        setting: ``Seen`` or ``Unseen``.

    Returns:
        A summary of what was written.

    Raises:
        FileExistsError: If ``<out_dir>/<setting>`` exists and ``overwrite`` is False.
        ValueError: If ``setting`` is unknown.
    """
    root = Path(out_dir)
    test_table = pairs_of_test_set(setting)
    _prepare_split_dir(root / setting, overwrite)
    items = tuple(iter_item_specs(config, setting))
    jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
    for spec in items:
        rendered = render_item(config, spec)
        _write_image(spec.image_path(root), rendered.image_bgr, jpeg_params)
        if spec.split == 'testset':
            _write_image(spec.gt_path(root), rendered.gt, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    objects = sorted({name for table in (AFFORDANCE_PARTS, test_table)
                      for parts in table.values() for name in parts})
    summary = SyntheticSummary(root=root, items=items, counts=_count_items(items),
                               labels=LABELS, objects=tuple(objects), setting=setting)
    meta = _build_meta(config, summary, test_table)
    (root / setting / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + '\n')
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point: parse ``argv``, build the data set, print a summary.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        Process exit code (0 on success).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output root; Seen/ and Unseen/ go in it')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train-per-object', type=int, default=4)
    parser.add_argument('--test-per-object', type=int, default=2)
    parser.add_argument('--size', type=int, default=256, help='image side in pixels')
    parser.add_argument('--scale', choices=sorted(WORLD_SCALES), default='v3',
                        help='object sizes: v3 (default, object-centric) or v2 (the old world)')
    parser.add_argument('--settings', nargs='+', choices=SETTINGS, default=list(SETTINGS),
                        help='which settings to write (default: both)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing setting folders')
    args = parser.parse_args(argv)
    config = SyntheticConfig.at_scale(args.scale, seed=args.seed,
                                      train_per_object=args.train_per_object,
                                      test_per_object=args.test_per_object, image_size=args.size)
    for setting in args.settings:
        start_s = time.perf_counter()
        try:
            summary = build_synthetic_dataset(args.out, config, overwrite=args.overwrite,
                                              setting=setting)
        except FileExistsError as error:
            print(f'error: {error}', file=sys.stderr)
            return 2
        elapsed_s = time.perf_counter() - start_s
        counts = ', '.join(f'{name} {count}' for name, count in summary.counts.items())
        print(f'wrote {len(summary.items)} images to {summary.root / setting} in '
              f'{elapsed_s:.2f} s ({counts}); labels: {", ".join(summary.labels)}; '
              f'objects: {", ".join(summary.objects)}')
    return 0


def _is_long_side_range(long_side: Tuple[float, float]) -> bool:
    """Whether ``long_side`` is a (low, high) pair inside [0.1, 1]."""
    return len(long_side) == 2 and 0.1 <= long_side[0] <= long_side[1] <= 1.0


def _seed_entropy(seed: int, spec: ItemSpec) -> List[int]:
    """Map an item to the integers that seed its generator (stable across runs)."""
    return [seed, SPLIT_DIRS.index(spec.split), VIEWS.index(spec.view),
            LABELS.index(spec.affordance), object_index(spec.object_name), spec.index]


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


def _build_meta(config: SyntheticConfig, summary: SyntheticSummary,
                test_table: Dict[str, Dict[str, str]]) -> dict:
    """Describe the build in a JSON-serialisable dict (no timestamps, so it is reproducible)."""
    kinds = {**OBJECTS, **UNSEEN_OBJECTS}
    return {
        'generator': 'training.synthetic',
        'split': summary.setting,
        'config': asdict(config),
        'labels': list(summary.labels),
        'objects': list(summary.objects),
        'affordance_parts': AFFORDANCE_PARTS,
        'test_affordance_parts': test_table,
        'actor_contact': {label: BODY_CONTACT.get(label, 'hand') for label in summary.labels},
        'object_parts': {name: [part.name for part in kinds[name].parts]
                         for name in summary.objects},
        'counts': summary.counts,
    }


if __name__ == '__main__':
    sys.exit(main())
