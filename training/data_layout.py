"""Where AGD20K / HICO-IIF files live, and reading them without letting bad files stop a run.

Layout (docs/method.md, "Data"); HICO-IIF has the same tree without the ``<Split>`` level::

    <root>/<Split>/trainset/{egocentric,exocentric}/<affordance>/<object>/<image>
    <root>/<Split>/testset/egocentric/<affordance>/<object>/<image>
    <root>/<Split>/testset/GT/<affordance>/<object>/<stem>.png

Indexing helpers skip what cannot be used and report each kind in one warning; readers turn
every decode failure into an ``OSError`` naming the file, which :func:`load_or_replace`
answers with the next readable item. :mod:`training.data` builds the datasets on top.
"""

from dataclasses import dataclass
from itertools import islice
import logging
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Set, Tuple, TypeVar

from affordance_grounding.config import IMAGENET_MEAN, IMAGENET_STD
import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

LOGGER = logging.getLogger(__name__)
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError,
               Image.DecompressionBombError)
GT_SIZE = 224  # GT maps are compared at 224 x 224 (docs/method.md, "Data")
NAMES_SHOWN = 10  # names listed in one skip warning
Item = TypeVar('Item')


class DatasetLayoutError(ValueError):
    """The dataset root is missing, empty or not in the expected layout."""


@dataclass(frozen=True)
class DatasetLayout:
    """Where the data lives and how samples are formed.

    Attributes:
        root: Dataset root.
        split: ``Seen``/``Unseen`` (AGD20K) or None (HICO-IIF, no split level).
        labels: Affordance labels in classifier order (``vocabulary.get_label_set``).
        num_exo: Exocentric images per training sample (E).
        image_size: Network input side (S).
        resize: Shorter-side resize before the random S x S crop (training).
        seed: Base seed of the per-item random draws.
        mean: Per-channel normalisation mean, the model's (``ModelConfig.dino_mean``;
            ImageNet for SelectiveCL, fed to both backbones as the reference does).
        std: Per-channel normalisation standard deviation.
    """

    root: str
    split: Optional[str]
    labels: Tuple[str, ...]
    num_exo: int = 3
    image_size: int = 224
    resize: int = 256
    seed: int = 0
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        """Reject settings that cannot form samples."""
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f'labels must be non-empty and unique, got {self.labels}')
        if self.num_exo < 1 or not 0 < self.image_size <= self.resize:
            raise ValueError('need num_exo >= 1 and 0 < image_size <= resize, got '
                             f'{self.num_exo}, {self.image_size}, {self.resize}')
        if self.split == '':
            raise ValueError("split must be a folder name such as 'Seen' or None (HICO-IIF)")

    @property
    def base(self) -> Path:
        """Folder holding ``trainset`` and ``testset``."""
        return Path(self.root) / self.split if self.split else Path(self.root)


# ---------------------------------------------------------------------------- index helpers
def list_images(folder: Path) -> List[Path]:
    """Image files of a folder, sorted so indices do not depend on the file system."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir()
                  if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def list_groups(view_dir: Path, labels: Sequence[str]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(affordance, object) folders under a view folder, and affordance folders not in labels."""
    if not view_dir.is_dir():
        return [], []
    groups, unknown = [], []
    for affordance_dir in sorted(p for p in view_dir.iterdir() if p.is_dir()):
        if affordance_dir.name not in labels:
            unknown.append(affordance_dir.name)
            continue
        groups.extend((affordance_dir.name, obj.name)
                      for obj in sorted(p for p in affordance_dir.iterdir() if p.is_dir()))
    return groups, unknown


def has_image_header(path: Path) -> bool:
    """Return True when PIL recognises the file (reads the header only, no decode)."""
    try:
        with Image.open(path) as image:
            return image.size[0] > 0 and image.size[1] > 0
    except READ_ERRORS:
        return False


def warn_skipped(what: str, names: Sequence[str]) -> None:
    """Log one warning that counts a whole kind of skipped item and names the first few."""
    if names:
        shown = ', '.join(str(name) for name in names[:NAMES_SHOWN])
        more = f' and {len(names) - NAMES_SHOWN} more' if len(names) > NAMES_SHOWN else ''
        LOGGER.warning('skipped %d %s: %s%s', len(names), what, shown, more)


def describe_root(layout: DatasetLayout, relative: str, unknown: Sequence[str]) -> str:
    """Say what the root holds, with a hint for the usual mistakes."""
    root = Path(layout.root)
    if not root.is_dir():
        return f'{root} does not exist or is not a folder.'
    entries = sorted(p.name + ('/' if p.is_dir() else '') for p in root.iterdir())
    found = (str(p.relative_to(root)) for p in root.rglob('*')
             if p.suffix.lower() in IMAGE_SUFFIXES)
    examples = list(islice(found, 3))
    text = (f'{root} contains {entries[:12] or "nothing"}; '
            + (f'image files found, e.g. {examples}.' if examples
               else 'no .jpg/.jpeg/.png files anywhere below it.'))
    top = relative.split('/')[0]
    if layout.split and (root / top).is_dir():
        text += f' Hint: {root / top} exists, so this looks like HICO-IIF: use split=null.'
    if not layout.split and any((root / name / top).is_dir() for name in ('Seen', 'Unseen')):
        text += " Hint: the root has a split level: use split='Seen' or 'Unseen'."
    if unknown:
        text += (f' Affordance folders {list(unknown)[:8]} are not in the label list '
                 f'{list(layout.labels[:6])}...: wrong label set?')
    return text


def require_images(layout: DatasetLayout, relative: str, found: int,
                   unknown: Sequence[str] = (), also: str = '') -> None:
    """Raise DatasetLayoutError naming the expected layout when nothing usable was found."""
    if not found:
        expected = layout.base / relative / '<affordance>' / '<object>' / '*.jpg'
        raise DatasetLayoutError(f'no usable images: expected files like {expected}{also}. '
                                 + describe_root(layout, relative, unknown))


def load_or_replace(load: Callable[[int], Item], index: int, count: int,
                    unreadable: Set[str]) -> Item:
    """Load item ``index``; if unreadable, the next readable one (warned once per file)."""
    for offset in range(count):
        try:
            return load((index + offset) % count)
        except OSError as error:  # read_rgb / read_gt turn every decode failure into OSError
            name = str(error.filename or error)
            if name not in unreadable:
                unreadable.add(name)
                LOGGER.warning('unreadable image (%d so far in this process), item %d replaced '
                               'by the next readable item: %s', len(unreadable), index, error)
    raise DatasetLayoutError(f'none of the {count} items could be read; see the warnings')


# --------------------------------------------------------------------------- reading files
def unreadable_error(path: Path, detail: str) -> OSError:
    """Build an OSError whose ``filename`` is the unreadable file."""
    error = OSError(f'{path}: {detail}')
    error.filename = str(path)
    return error


def read_rgb(path: Path) -> Image.Image:
    """Open an image as RGB, forcing the decode so corrupt files fail here."""
    try:
        with Image.open(path) as image:
            return image.convert('RGB')
    except READ_ERRORS as error:
        raise unreadable_error(path, str(error)) from error


def read_gt(path: Path, size: int = GT_SIZE) -> np.ndarray:
    """GT heat map as the reference reads it: uint8 grey / 255 -> float64, cv2 bilinear resize.

    Returns:
        (size, size) float64 array in [0, 1].
    """
    gt = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)  # (H, W) uint8 or None
    if gt is None:
        raise unreadable_error(path, 'OpenCV cannot read this GT map')
    return cv2.resize(gt / 255.0, (size, size), interpolation=cv2.INTER_LINEAR)
