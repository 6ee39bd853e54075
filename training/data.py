"""AGD20K / HICO-IIF datasets: training samples (1 ego + E exo images) and test items with GT.

Layout (METHOD.md 1.1); HICO-IIF has the same tree without the ``<Split>`` level::

    <root>/<Split>/trainset/{egocentric,exocentric}/<affordance>/<object>/<image>
    <root>/<Split>/testset/egocentric/<affordance>/<object>/<image>
    <root>/<Split>/testset/GT/<affordance>/<object>/<stem>.png

Images are ``.jpg``/``.jpeg``/``.png`` in any letter case. The GT of ``<stem>.<ext>`` is
``<stem>.png`` (the real stem, not the reference's "replace the last 3 characters").

Bad data never stops a run (METHOD.md 7.2 item 21):

* At index time, files and folders that cannot be used are skipped and each kind is reported
  in ONE warning that counts them and names the first few: affordance folders not in the label
  list, exocentric folders without egocentric images, image files whose header does not parse
  (training) or that do not decode (test images and GT maps), test images without a GT map.
* At load time, an item whose files turn out unreadable (e.g. a truncated JPEG) is replaced by
  the next readable item (index + 1, + 2, ... wrapping round), so the replacement is the same
  in every worker and after a resume. Each unreadable file is warned about once per process
  with a running count; a test item that was replaced reports the ``path`` actually loaded.
* A root with no usable images raises :class:`DatasetLayoutError` naming the expected layout
  and what the root holds.

Training randomness (ego draw, extra exo draws, crops, flips) of item ``i`` in epoch ``e``
comes from its own generator seeded with ``(seed, e, i)``: workers and resumed runs draw
the same samples. No GT cache file is written (METHOD.md 7.2 items 11 and 22).
"""

from dataclasses import dataclass
from itertools import islice
import logging
from pathlib import Path
import random
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar

from affordance_grounding.config import IMAGENET_MEAN, IMAGENET_STD
import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
import torch
from torchvision.transforms import functional as TF

LOGGER = logging.getLogger(__name__)
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError,
               Image.DecompressionBombError)
GT_SIZE = 224  # GT maps are compared at 224 x 224 (METHOD.md 1.5)
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


# ------------------------------------------------------------------------------ transforms
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


def to_normalised_tensor(image: Image.Image, layout: DatasetLayout) -> torch.Tensor:
    """PIL RGB image -> (3, H, W) float32, normalised with the layout's mean/std (METHOD 1.4).

    The same float32 operations as ``to_tensor`` + ``normalize`` (x / 255, then (x - mean) /
    std), done in NumPy so the main process does not pay torch's intra-op threading per image.
    """
    array = np.asarray(image, dtype=np.float32) / np.float32(255)  # (H, W, 3) in [0, 1]
    mean = np.asarray(layout.mean, np.float32)
    std = np.asarray(layout.std, np.float32)
    array = (array - mean) / std  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))  # (3, H, W)


def train_transform(image: Image.Image, layout: DatasetLayout,
                    rng: random.Random) -> torch.Tensor:
    """Shorter side to ``resize`` (bilinear), random S x S crop, flip p = 0.5, normalise.

    Returns:
        (3, S, S) float32 tensor.
    """
    image = TF.resize(image, layout.resize, interpolation=TF.InterpolationMode.BILINEAR)
    width, height = image.size
    size = layout.image_size
    top, left = rng.randint(0, height - size), rng.randint(0, width - size)
    image = TF.crop(image, top, left, size, size)
    if rng.random() < 0.5:
        image = TF.hflip(image)
    return to_normalised_tensor(image, layout)


def test_transform(image: Image.Image, layout: DatasetLayout) -> torch.Tensor:
    """Resize to exactly S x S (aspect not kept, PIL bilinear), to tensor, normalise."""
    size = layout.image_size
    return to_normalised_tensor(image.resize((size, size), Image.BILINEAR), layout)


# -------------------------------------------------------------------------------- training
@dataclass
class TrainItem:
    """One training sample: ego (3, S, S), exo (E, 3, S, S), label index, affordance name."""

    ego: torch.Tensor
    exo: torch.Tensor
    label: int
    affordance: str


@dataclass
class TrainBatchItems:
    """A collated batch: ego (B, 3, S, S), exo (B, E, 3, S, S), labels (B,) int64."""

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
    """Indexed by exocentric images (METHOD.md 1.3); ego and extra exo images drawn per item.

    Item ``i`` is exo image ``<aff>/<obj>/<img>`` with label ``labels.index(aff)``, one ego
    image drawn uniformly from ``egocentric/<aff>/<obj>`` and E - 1 extra exo images from the
    same exo folder: distinct from all chosen (anchor included) when the folder has more than
    E files, with replacement otherwise.
    """

    def __init__(self, layout: DatasetLayout):
        """Index the training folders; raises DatasetLayoutError if nothing is usable."""
        self.layout = layout
        self.epoch = 0
        self.unreadable: Set[str] = set()
        self.label_of = {name: index for index, name in enumerate(layout.labels)}
        train = layout.base / 'trainset'
        groups, unknown = list_groups(train / 'exocentric', layout.labels)
        warn_skipped('exocentric affordance folders not in the label list', unknown)
        self.exo_files: Dict[Tuple[str, str], List[Path]] = {}
        self.ego_files: Dict[Tuple[str, str], List[Path]] = {}
        bad_files: List[str] = []
        missing_ego: List[str] = []
        for group in groups:
            exo, ego = (self._usable(train / view / group[0] / group[1], bad_files)
                        for view in ('exocentric', 'egocentric'))
            if exo and not ego:
                missing_ego.append(f'{group[0]}/{group[1]} ({len(exo)} exo images)')
            elif exo:
                self.exo_files[group], self.ego_files[group] = exo, ego
        warn_skipped('unreadable training images', bad_files)
        warn_skipped('exocentric folders without egocentric images', missing_ego)
        self.index = [(group, position) for group, files in self.exo_files.items()
                      for position in range(len(files))]
        require_images(layout, 'trainset/exocentric', len(self.index), unknown)

    def _usable(self, folder: Path, bad_files: List[str]) -> List[Path]:
        """Images of a folder whose header parses; the others are appended to ``bad_files``."""
        good = []
        for path in list_images(folder):
            if has_image_header(path):
                good.append(path)
            else:
                bad_files.append(str(path.relative_to(self.layout.base)))
        return good

    def __len__(self) -> int:
        """Return the number of exocentric images (the epoch length)."""
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` makes (call before iterating)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> TrainItem:
        """Return sample ``index``; an unreadable sample is replaced by the next readable one."""
        return load_or_replace(self._load, index, len(self.index), self.unreadable)

    def _load(self, index: int) -> TrainItem:
        """Draw and transform one sample with the generator of (seed, epoch, index)."""
        group, position = self.index[index]
        rng = random.Random(f'{self.layout.seed}:{self.epoch}:{index}')
        exo_paths = self._draw_exo(self.exo_files[group], position, rng)
        ego_path = rng.choice(self.ego_files[group])
        ego = train_transform(read_rgb(ego_path), self.layout, rng)  # (3, S, S)
        exo = torch.stack([train_transform(read_rgb(path), self.layout, rng)
                           for path in exo_paths])  # (E, 3, S, S)
        return TrainItem(ego=ego, exo=exo, label=self.label_of[group[0]], affordance=group[0])

    def _draw_exo(self, files: List[Path], anchor: int, rng: random.Random) -> List[Path]:
        """Draw the anchor plus E - 1 files: distinct when the folder has more than E files."""
        chosen = [files[anchor]]
        while len(chosen) < self.layout.num_exo:
            candidate = rng.choice(files)
            if len(files) > self.layout.num_exo and candidate in chosen:
                continue  # re-draw until distinct from everything chosen so far
            chosen.append(candidate)
        return chosen


# ------------------------------------------------------------------------------------ test
@dataclass
class TestItem:
    """One test image with its ground truth (METHOD.md 1.5).

    Attributes:
        image: (3, S, S) float32 normalised image.
        label: Label index.
        affordance: Affordance name.
        object_name: Object folder name.
        gt: (224, 224) float64 GT heat map in [0, 1].
        path: ``<affordance>/<object>/<file>``, relative to ``testset/egocentric``.
    """

    __test__ = False  # not a pytest test class

    image: torch.Tensor
    label: int
    affordance: str
    object_name: str
    gt: np.ndarray
    path: str


@dataclass
class TestBatchItems:
    """Collated test items: images (B, 3, S, S), labels (B,) int64, gts (B, 224, 224) float64."""

    __test__ = False  # not a pytest test class

    images: torch.Tensor
    labels: torch.Tensor
    gts: np.ndarray
    affordances: List[str]
    object_names: List[str]
    paths: List[str]


def collate_test_items(items: Sequence[TestItem]) -> TestBatchItems:
    """Stack test items into a batch (GT maps stay float64 numpy)."""
    return TestBatchItems(images=torch.stack([item.image for item in items]),
                          labels=torch.tensor([item.label for item in items], dtype=torch.long),
                          gts=np.stack([item.gt for item in items]),
                          affordances=[item.affordance for item in items],
                          object_names=[item.object_name for item in items],
                          paths=[item.path for item in items])


class TestDataset(torch.utils.data.Dataset):
    """Test images that have a GT map; both decoded once at index time to skip bad files.

    GT maps are read per item (a float64 224 x 224 map is 400 kB, too large to keep for the
    whole split, and the reference's pickled cache file is not used).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, layout: DatasetLayout, gt_size: int = GT_SIZE):
        """Index the test folders; raises DatasetLayoutError if nothing is usable."""
        self.layout = layout
        self.gt_size = gt_size
        self.unreadable: Set[str] = set()
        self.label_of = {name: index for index, name in enumerate(layout.labels)}
        test = layout.base / 'testset'
        groups, unknown = list_groups(test / 'egocentric', layout.labels)
        warn_skipped('test affordance folders not in the label list', unknown)
        self.items: List[Tuple[Path, Path, str, str]] = []
        missing_gt, unreadable = [], []
        for affordance, obj in groups:
            for image_path in list_images(test / 'egocentric' / affordance / obj):
                gt_path = test / 'GT' / affordance / obj / f'{image_path.stem}.png'
                name = f'{affordance}/{obj}/{image_path.name}'
                if not gt_path.is_file():
                    missing_gt.append(name)
                elif not self._decodes(image_path, gt_path):
                    unreadable.append(name)
                else:
                    self.items.append((image_path, gt_path, affordance, obj))
        warn_skipped('test images without a GT map', missing_gt)
        warn_skipped('unreadable test images or GT maps', unreadable)
        require_images(layout, 'testset/egocentric', len(self.items), unknown,
                       also=f' with GT maps {test}/GT/<affordance>/<object>/<stem>.png')

    @staticmethod
    def _decodes(image_path: Path, gt_path: Path) -> bool:
        """Return True when both files decode."""
        try:
            with Image.open(image_path) as image:
                # JPEG: decode at 1/8 scale, which still reads the whole entropy-coded stream
                image.draft('RGB', (max(image.size[0] // 8, 1), max(image.size[1] // 8, 1)))
                image.load()
        except READ_ERRORS:
            return False
        return cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE) is not None

    def __len__(self) -> int:
        """Return the number of test images with a GT map."""
        return len(self.items)

    def __getitem__(self, index: int) -> TestItem:
        """Load test item ``index``; an unreadable item is replaced by the next readable one."""
        return load_or_replace(self._load, index, len(self.items), self.unreadable)

    def _load(self, index: int) -> TestItem:
        """Read, resize and normalise one test image and its GT."""
        image_path, gt_path, affordance, obj = self.items[index]
        return TestItem(image=test_transform(read_rgb(image_path), self.layout),
                        label=self.label_of[affordance], affordance=affordance,
                        object_name=obj, gt=read_gt(gt_path, self.gt_size),
                        path=f'{affordance}/{obj}/{image_path.name}')


# ----------------------------------------------------------------------------- builders
def layout_for_model(root: str, split: Optional[str], model_config, **extra) -> DatasetLayout:
    """Dataset layout whose labels, input size and normalisation are the model's own."""
    return DatasetLayout(root=root, split=split, labels=tuple(model_config.labels),
                         image_size=model_config.image_size, mean=model_config.dino_mean,
                         std=model_config.dino_std, **extra)


def build_datasets(config, model_config) -> Tuple[TrainDataset, TestDataset]:
    """Build the training and test datasets from a TrainConfig and the ModelConfig."""
    layout = layout_for_model(config.data_root, config.split, model_config,
                              num_exo=config.num_exo, seed=config.seed)
    return TrainDataset(layout), TestDataset(layout)


def seed_of(*parts) -> int:
    """Derive a 63-bit seed from printable parts (stable across processes)."""
    return random.Random(':'.join(str(part) for part in parts)).getrandbits(63)


def build_train_loader(dataset: TrainDataset, batch_size: int, *, workers: int = 0,
                       epoch: int = 0, shuffle: bool = True, pin_memory: bool = False,
                       batches: Optional[Sequence[Sequence[int]]] = None,
                       ) -> torch.utils.data.DataLoader:
    """Build the loader of one epoch: sets the dataset epoch, order seeded by (seed, epoch).

    Workers are not persistent, so a later ``set_epoch`` reaches them; build one loader per
    epoch. The last, smaller batch is kept (``drop_last=False``, as the reference). With
    ``batches`` (index lists, e.g. one process's shard from the training loop, resumed part
    way through an epoch) those batches are loaded in that order instead.
    """
    dataset.set_epoch(epoch)
    if batches is not None:
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, num_workers=workers,
            collate_fn=collate_train_items, pin_memory=pin_memory, persistent_workers=False)
    generator = torch.Generator().manual_seed(seed_of(dataset.layout.seed, epoch, 'order'))
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
        collate_fn=collate_train_items, pin_memory=pin_memory, drop_last=False,
        generator=generator, persistent_workers=False)


def build_test_loader(dataset: TestDataset, batch_size: int = 1, *, workers: int = 0,
                      pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Build a loader over the test items in index order (no shuffle, last batch kept)."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=collate_test_items, pin_memory=pin_memory, drop_last=False)
