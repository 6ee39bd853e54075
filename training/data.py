"""AGD20K / HICO-IIF datasets: training samples (1 ego + E exo images) and test items with GT.

Layout (METHOD.md 1.1); HICO-IIF has no ``<Split>`` level::

    <root>/<Split>/trainset/{egocentric,exocentric}/<affordance>/<object>/<image>
    <root>/<Split>/testset/egocentric/<affordance>/<object>/<image>
    <root>/<Split>/testset/GT/<affordance>/<object>/<stem>.png

Bad data never stops a run: folders and files that cannot be used are skipped at index time
with one warning that counts and names them; an image that turns out unreadable at load time
is replaced by the next readable sample (counted and warned about once per file).
"""

from dataclasses import dataclass
import logging
from pathlib import Path
import random
from typing import Dict, List, Optional, Sequence, Tuple

from affordance_grounding.config import IMAGENET_MEAN, IMAGENET_STD
import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
import torch
from torchvision.transforms import functional as TF

LOGGER = logging.getLogger(__name__)
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


class DatasetLayoutError(ValueError):
    """The dataset root is missing, empty or not in the expected layout."""


@dataclass(frozen=True)
class DatasetLayout:
    """Where the data lives and how samples are formed.

    Attributes:
        root: Dataset root.
        split: ``Seen``/``Unseen`` (AGD20K) or None (HICO-IIF, no split level).
        labels: Affordance labels in classifier order.
        num_exo: Exocentric images per training sample (E).
        image_size: Network input side.
        resize: Shorter-side resize before the random crop (training).
        seed: Base seed of the per-item random draws.
    """

    root: str
    split: Optional[str]
    labels: Tuple[str, ...]
    num_exo: int = 3
    image_size: int = 224
    resize: int = 256
    seed: int = 0

    @property
    def base(self) -> Path:
        """Folder holding ``trainset`` and ``testset``."""
        return Path(self.root) / self.split if self.split else Path(self.root)


def list_images(folder: Path) -> List[Path]:
    """Image files of a folder, sorted (so indices do not depend on the file system)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def list_groups(view_dir: Path, labels: Sequence[str]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(affordance, object) folders under a view folder, and affordances not in ``labels``."""
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


def require_layout(layout: DatasetLayout, relative: str, found: int) -> None:
    """Raise a clear error when a dataset part has no usable images."""
    if found:
        return
    expected = layout.base / relative / '<affordance>' / '<object>' / '*.jpg'
    present = sorted(p.name for p in layout.base.iterdir()) if layout.base.is_dir() else []
    raise DatasetLayoutError(
        f'no usable images found; expected files like {expected} with affordance folders '
        f'named after the labels ({", ".join(layout.labels[:4])}, ...). '
        f'{layout.base} contains: {present or "nothing (missing folder)"}')


def warn_skipped(what: str, names: Sequence[str]) -> None:
    """One warning for a whole category of skipped items."""
    if names:
        shown = ', '.join(str(name) for name in names[:10])
        more = f' and {len(names) - 10} more' if len(names) > 10 else ''
        LOGGER.warning('skipped %d %s: %s%s', len(names), what, shown, more)


def read_rgb(path: Path) -> Image.Image:
    """Open an image as RGB, forcing the decode so corrupt files fail here."""
    with Image.open(path) as image:
        return image.convert('RGB')


def normalise(tensor: torch.Tensor) -> torch.Tensor:
    """Apply the ImageNet normalisation to a (3, H, W) tensor in [0, 1] (METHOD 1.4)."""
    return TF.normalize(tensor, IMAGENET_MEAN, IMAGENET_STD)


def train_transform(image: Image.Image, layout: DatasetLayout,
                    rng: random.Random) -> torch.Tensor:
    """Shorter side to 256, random 224 crop, flip with p = 0.5, to tensor, normalise."""
    image = TF.resize(image, layout.resize, interpolation=TF.InterpolationMode.BILINEAR)
    width, height = image.size
    size = layout.image_size
    top, left = rng.randint(0, max(height - size, 0)), rng.randint(0, max(width - size, 0))
    image = TF.crop(image, top, left, size, size)
    if rng.random() < 0.5:
        image = TF.hflip(image)
    return normalise(TF.to_tensor(image))


def test_transform(image: Image.Image, size: int) -> torch.Tensor:
    """Resize to exactly size x size (aspect not kept, bilinear), to tensor, normalise."""
    image = image.resize((size, size), Image.BILINEAR)
    return normalise(TF.to_tensor(image))


@dataclass
class TrainItem:
    """One training sample: ego (3, S, S), exo (E, 3, S, S), label index, affordance name."""

    ego: torch.Tensor
    exo: torch.Tensor
    label: int
    affordance: str


@dataclass
class TrainBatchItems:
    """A collated batch: ego (B, 3, S, S), exo (B, E, 3, S, S), labels (B,)."""

    ego: torch.Tensor
    exo: torch.Tensor
    labels: torch.Tensor
    affordances: List[str]


def collate_train_items(items: Sequence[TrainItem]) -> TrainBatchItems:
    """Stack training items into a batch."""
    return TrainBatchItems(ego=torch.stack([item.ego for item in items]),
                           exo=torch.stack([item.exo for item in items]),
                           labels=torch.tensor([item.label for item in items], dtype=torch.long),
                           affordances=[item.affordance for item in items])


class TrainDataset(torch.utils.data.Dataset):
    """Indexed by exocentric images (METHOD 1.3); ego and extra exo images drawn per item.

    The draws and augmentations of item ``i`` in epoch ``e`` come from a generator seeded by
    (seed, e, i), so they are the same in every worker and after a resume.
    """

    def __init__(self, layout: DatasetLayout):
        """Index the training folders; raises DatasetLayoutError if nothing is usable."""
        self.layout = layout
        self.epoch = 0
        train = layout.base / 'trainset'
        groups, unknown = list_groups(train / 'exocentric', layout.labels)
        warn_skipped('affordance folders not in the label list', unknown)
        self.exo_files: Dict[Tuple[str, str], List[Path]] = {}
        self.ego_files: Dict[Tuple[str, str], List[Path]] = {}
        missing_ego = []
        for group in groups:
            ego = list_images(train / 'egocentric' / group[0] / group[1])
            exo = list_images(train / 'exocentric' / group[0] / group[1])
            if not ego:
                missing_ego.append('/'.join(group))
                continue
            if exo:
                self.ego_files[group], self.exo_files[group] = ego, exo
        warn_skipped('exocentric folders without egocentric images', missing_ego)
        self.index = [(group, position) for group, files in self.exo_files.items()
                      for position in range(len(files))]
        require_layout(layout, 'trainset/exocentric', len(self.index))
        self.unreadable: set = set()

    def __len__(self) -> int:
        """Return the number of exocentric images."""
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` makes."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> TrainItem:
        """Return sample ``index``; an unreadable sample is replaced by the next one."""
        for offset in range(len(self.index)):
            try:
                return self._load((index + offset) % len(self.index))
            except READ_ERRORS as error:
                self._note_unreadable(error)
        raise DatasetLayoutError('no training image could be read')

    def _note_unreadable(self, error: Exception) -> None:
        """Warn once per unreadable file, with a running count."""
        name = getattr(error, 'filename', None) or str(error)
        if name not in self.unreadable:
            self.unreadable.add(name)
            LOGGER.warning('unreadable training image (%d so far), using another sample: %s',
                           len(self.unreadable), error)

    def _load(self, index: int) -> TrainItem:
        """Draw and transform one sample."""
        group, position = self.index[index]
        rng = random.Random(f'{self.layout.seed}:{self.epoch}:{index}')
        exo_paths = self._draw_exo(self.exo_files[group], position, rng)
        ego_path = rng.choice(self.ego_files[group])
        ego = train_transform(self._open(ego_path), self.layout, rng)
        exo = torch.stack([train_transform(self._open(path), self.layout, rng)
                           for path in exo_paths])
        return TrainItem(ego=ego, exo=exo, label=self.layout.labels.index(group[0]),
                         affordance=group[0])

    @staticmethod
    def _open(path: Path) -> Image.Image:
        try:
            return read_rgb(path)
        except READ_ERRORS as error:
            raise OSError(f'{path}: {error}') from error

    def _draw_exo(self, files: List[Path], anchor: int, rng: random.Random) -> List[Path]:
        """Draw the anchor plus E-1 files: distinct when the folder has more than E files."""
        chosen = [files[anchor]]
        while len(chosen) < self.layout.num_exo:
            candidate = rng.choice(files)
            if len(files) > self.layout.num_exo and candidate in chosen:
                continue
            chosen.append(candidate)
        return chosen


@dataclass
class TestItem:
    """One test image with its ground truth (METHOD 1.5).

    Attributes:
        image: (3, S, S) normalised image.
        label: Label index.
        affordance: Affordance name.
        object_name: Object folder name.
        gt: (224, 224) float64 GT heat map in [0, 1].
        path: Image path relative to the test egocentric folder.
    """

    __test__ = False  # not a pytest test class

    image: torch.Tensor
    label: int
    affordance: str
    object_name: str
    gt: np.ndarray
    path: str


class TestDataset(torch.utils.data.Dataset):
    """Test images that have a GT map; GT read with OpenCV, resized like the reference."""

    __test__ = False  # not a pytest test class

    def __init__(self, layout: DatasetLayout, gt_size: int = 224):
        """Index the test folders; raises DatasetLayoutError if nothing is usable."""
        self.layout = layout
        self.gt_size = gt_size
        test = layout.base / 'testset'
        groups, unknown = list_groups(test / 'egocentric', layout.labels)
        warn_skipped('test affordance folders not in the label list', unknown)
        self.items: List[Tuple[Path, Path, str, str]] = []
        missing_gt, unreadable = [], []
        for affordance, obj in groups:
            for image_path in list_images(test / 'egocentric' / affordance / obj):
                gt_path = test / 'GT' / affordance / obj / f'{image_path.stem}.png'
                if not gt_path.is_file():
                    missing_gt.append(f'{affordance}/{obj}/{image_path.name}')
                elif not self._readable(image_path, gt_path):
                    unreadable.append(f'{affordance}/{obj}/{image_path.name}')
                else:
                    self.items.append((image_path, gt_path, affordance, obj))
        warn_skipped('test images without a GT map', missing_gt)
        warn_skipped('unreadable test images or GT maps', unreadable)
        require_layout(layout, 'testset/egocentric', len(self.items))

    @staticmethod
    def _readable(image_path: Path, gt_path: Path) -> bool:
        """Return True when both files decode (checked once at index time)."""
        try:
            read_rgb(image_path)
        except READ_ERRORS:
            return False
        return cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE) is not None

    def __len__(self) -> int:
        """Return the number of test images with GT."""
        return len(self.items)

    def __getitem__(self, index: int) -> TestItem:
        """Load test item ``index``."""
        image_path, gt_path, affordance, obj = self.items[index]
        gt = cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE)  # (H, W) uint8
        gt = cv2.resize(gt / 255.0, (self.gt_size, self.gt_size),
                        interpolation=cv2.INTER_LINEAR)  # float64 in [0, 1]
        return TestItem(image=test_transform(read_rgb(image_path), self.layout.image_size),
                        label=self.layout.labels.index(affordance), affordance=affordance,
                        object_name=obj, gt=gt, path=f'{affordance}/{obj}/{image_path.name}')


def build_datasets(config, labels: Sequence[str]) -> Tuple[TrainDataset, TestDataset]:
    """Build the training and test datasets from a TrainConfig and the model labels."""
    layout = DatasetLayout(root=config.data_root, split=config.split, labels=tuple(labels),
                           num_exo=config.num_exo, seed=config.seed)
    return TrainDataset(layout), TestDataset(layout)
