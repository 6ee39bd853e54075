"""AGD20K-layout datasets: sample formation, transforms, GT handling and bad data."""

import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
import pytest
import torch
from torchvision.transforms import functional as TF
from training.data import (
    DatasetLayout, DatasetLayoutError, IMAGENET_MEAN, IMAGENET_STD, TestDataset, TrainDataset)

LABELS = ('cut_with', 'hold', 'pour')


def write_image(path: Path, value: int, size=(40, 30)):
    """Write a solid-grey JPEG whose grey level identifies the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path, quality=100)


def build_tree(root: Path, split='Seen', exo_counts=None, ego=True):
    """Train folders hold/cup (exo_counts['hold']) and pour/bottle; two test images."""
    base = root / split if split else root
    exo_counts = exo_counts or {'hold': 5, 'pour': 2}
    value = 10
    for affordance, obj in (('hold', 'cup'), ('pour', 'bottle')):
        for index in range(exo_counts[affordance]):
            write_image(base / 'trainset/exocentric' / affordance / obj / f'x{index}.jpg', value)
            value += 10
        if ego:
            write_image(base / 'trainset/egocentric' / affordance / obj / 'e0.jpg', 200)
    for name in ('t0', 't1'):
        write_image(base / 'testset/egocentric/hold/cup' / f'{name}.jpg', 90, size=(64, 48))
        (base / 'testset/GT/hold/cup').mkdir(parents=True, exist_ok=True)
        gt = np.zeros((48, 64), np.uint8)
        gt[10:20, 30:40] = 255
        cv2.imwrite(str(base / 'testset/GT/hold/cup' / f'{name}.png'), gt)
    return base


def grey_level(image: torch.Tensor) -> float:
    """Undo the normalisation of channel 0 and return the mean grey level (0..255)."""
    return float((image[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]).mean() * 255)


def layout(root, split='Seen', **extra):
    return DatasetLayout(root=str(root), split=split, labels=LABELS, **extra)


def test_train_dataset_is_indexed_by_exo_images_with_label_indices(tmp_path):
    build_tree(tmp_path)
    dataset = TrainDataset(layout(tmp_path))
    assert len(dataset) == 7
    labels = sorted({dataset[i].label for i in range(len(dataset))})
    assert labels == [LABELS.index('hold'), LABELS.index('pour')]
    item = dataset[0]
    assert item.ego.shape == (3, 224, 224) and item.exo.shape == (3, 3, 224, 224)
    assert item.ego.dtype == torch.float32


def test_train_dataset_draws_ego_from_same_group_and_anchor_first(tmp_path):
    build_tree(tmp_path)
    dataset = TrainDataset(layout(tmp_path))
    item = dataset[2]  # hold/cup x2 has grey level 30
    assert grey_level(item.ego) == pytest.approx(200, abs=2)
    assert grey_level(item.exo[0]) == pytest.approx(30, abs=2)


def test_train_dataset_extra_exo_are_distinct_when_folder_is_large(tmp_path):
    build_tree(tmp_path)
    dataset = TrainDataset(layout(tmp_path))
    for epoch in range(5):
        dataset.set_epoch(epoch)
        for index in range(5):  # the hold/cup items (5 files > E = 3)
            levels = [round(grey_level(view) / 10) for view in dataset[index].exo]
            assert len(set(levels)) == 3


def test_train_dataset_small_folder_draws_with_replacement(tmp_path):
    build_tree(tmp_path, exo_counts={'hold': 5, 'pour': 2})
    dataset = TrainDataset(layout(tmp_path))
    levels = [round(grey_level(view) / 10) for view in dataset[5].exo]
    assert len(levels) == 3 and set(levels) <= {6, 7}  # only the 2 pour files exist


def test_train_dataset_draws_depend_on_seed_epoch_and_index_only(tmp_path):
    build_tree(tmp_path)
    first, second = TrainDataset(layout(tmp_path)), TrainDataset(layout(tmp_path))
    assert torch.equal(first[1].exo, second[1].exo)
    changes = []
    for epoch in range(1, 6):
        second.set_epoch(epoch)
        changes.append(not torch.equal(first[1].exo, second[1].exo))
    assert any(changes)


def test_test_dataset_gt_and_transform_match_reference_formulas(tmp_path):
    base = build_tree(tmp_path)
    dataset = TestDataset(layout(tmp_path))
    assert len(dataset) == 2
    item = dataset[0]
    raw = cv2.imread(str(base / 'testset/GT/hold/cup/t0.png'), cv2.IMREAD_GRAYSCALE)
    expected_gt = cv2.resize(raw / 255.0, (224, 224), interpolation=cv2.INTER_LINEAR)
    assert item.gt.dtype == np.float64 and np.array_equal(item.gt, expected_gt)
    photo = Image.open(base / 'testset/egocentric/hold/cup/t0.jpg').convert('RGB')
    expected = TF.normalize(TF.to_tensor(photo.resize((224, 224), Image.BILINEAR)),
                            IMAGENET_MEAN, IMAGENET_STD)
    assert torch.allclose(item.image, expected, atol=1e-6)
    assert (item.affordance, item.object_name, item.label) == ('hold', 'cup', 1)


def test_hico_layout_has_no_split_level(tmp_path):
    build_tree(tmp_path, split=None)
    assert len(TrainDataset(layout(tmp_path, split=None))) == 7
    assert len(TestDataset(layout(tmp_path, split=None))) == 2


def test_missing_ego_folder_is_skipped_with_one_warning(tmp_path, caplog):
    base = build_tree(tmp_path)
    for path in (base / 'trainset/egocentric/pour').rglob('*.jpg'):
        path.unlink()
    with caplog.at_level(logging.WARNING, logger='training.data'):
        dataset = TrainDataset(layout(tmp_path))
    assert len(dataset) == 5
    warnings = [r.getMessage() for r in caplog.records if 'egocentric' in r.getMessage()]
    assert len(warnings) == 1 and 'pour/bottle' in warnings[0] and 'skipped 1' in warnings[0]


def test_corrupt_training_image_is_replaced_and_counted(tmp_path, caplog):
    base = build_tree(tmp_path)
    (base / 'trainset/exocentric/hold/cup/x0.jpg').write_bytes(b'not a jpeg')
    dataset = TrainDataset(layout(tmp_path))
    with caplog.at_level(logging.WARNING, logger='training.data'):
        item = dataset[0]
        dataset[0]
    assert item.exo.shape == (3, 3, 224, 224)
    messages = [r.getMessage() for r in caplog.records if 'unreadable' in r.getMessage()]
    assert len(messages) == 1 and 'x0.jpg' in messages[0]


def test_missing_and_corrupt_gt_are_skipped_with_warnings(tmp_path, caplog):
    base = build_tree(tmp_path)
    (base / 'testset/GT/hold/cup/t0.png').unlink()
    (base / 'testset/GT/hold/cup/t1.png').write_bytes(b'broken')
    write_image(base / 'testset/egocentric/hold/cup/t2.jpg', 50)
    cv2.imwrite(str(base / 'testset/GT/hold/cup/t2.png'), np.zeros((30, 40), np.uint8))
    with caplog.at_level(logging.WARNING, logger='training.data'):
        dataset = TestDataset(layout(tmp_path))
    assert [path.name for path, *_ in dataset.items] == ['t2.jpg']
    text = ' '.join(r.getMessage() for r in caplog.records)
    assert 'without a GT map' in text and 't0.jpg' in text and 'unreadable' in text


@pytest.mark.parametrize('make', ['empty', 'flat'])
def test_empty_or_wrong_layout_is_a_clear_error(tmp_path, make):
    if make == 'flat':  # images directly under the affordance folder (object level missing)
        write_image(tmp_path / 'Seen/trainset/exocentric/hold/x.jpg', 1)
    with pytest.raises(DatasetLayoutError, match='trainset/exocentric/<affordance>/<object>'):
        TrainDataset(layout(tmp_path))


def test_unknown_affordance_folders_are_reported(tmp_path, caplog):
    base = build_tree(tmp_path)
    write_image(base / 'trainset/exocentric/juggle/ball/x.jpg', 1)
    with caplog.at_level(logging.WARNING, logger='training.data'):
        TrainDataset(layout(tmp_path))
    assert any('juggle' in r.getMessage() for r in caplog.records)
