"""AGD20K / HICO-IIF datasets: sample formation, transforms, GT, loaders and bad data.

Trees are built in tmp dirs from solid-grey images whose grey level encodes which file it is.
"""

import dataclasses
import logging
from pathlib import Path
import random
import shutil

from affordance_grounding.config import IMAGENET_MEAN, IMAGENET_STD
from affordance_grounding.vocabulary import get_label_set
import cv2
import numpy as np
from PIL import Image
import pytest
import torch
from torchvision.transforms import functional as TF
from training.data import (
    build_test_loader, build_train_loader, collate_train_items, DatasetLayout,
    DatasetLayoutError, layout_for_model, read_rgb, TestDataset, train_transform, TrainDataset)

SEEN = get_label_set('seen')
HICO = get_label_set('hico_iif')
LOGGER = 'training'  # training.data and training.data_layout warn
# (affordance, object): number of exo files; exo grey level = 10 * global file number + 10
EXO_COUNTS = {('hold', 'cup'): 5, ('hold', 'knife'): 3, ('pour', 'bottle'): 2}
EGO_LEVELS = {('hold', 'cup'): (200, 210), ('hold', 'knife'): (230,), ('pour', 'bottle'): (250,)}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run like a DataLoader worker (one intra-op thread): small tensors are much faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_image(path: Path, value, size=(40, 30)):
    """Write a solid image (grey level ``value``) or an (H, W, 3) uint8 array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(value, np.ndarray):
        value = np.full((size[1], size[0], 3), value, np.uint8)
    Image.fromarray(value).save(path, **({'quality': 100} if path.suffix == '.jpg' else {}))


def write_gt(path: Path, array: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def build_tree(root: Path, split='Seen'):
    """Train groups of EXO_COUNTS (ego levels EGO_LEVELS) and test images hold/cup t0, t1."""
    base = root / split if split else root
    value = 10
    for (affordance, obj), count in EXO_COUNTS.items():
        for index in range(count):
            write_image(base / 'trainset/exocentric' / affordance / obj / f'x{index}.jpg', value)
            value += 10
        for index, level in enumerate(EGO_LEVELS[(affordance, obj)]):
            write_image(base / 'trainset/egocentric' / affordance / obj / f'e{index}.jpg', level)
    gt = np.zeros((48, 64), np.uint8)
    gt[10:20, 30:40] = 255
    for name in ('t0', 't1'):
        write_image(base / 'testset/egocentric/hold/cup' / f'{name}.jpg', 90, size=(64, 48))
        write_gt(base / 'testset/GT/hold/cup' / f'{name}.png', gt)
    return base


def grey_level(image: torch.Tensor) -> int:
    """Undo the normalisation of channel 0 and return the rounded mean grey level (0..255)."""
    return round(float((image[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]).mean()) * 255)


def exo_levels(item):
    return [round(grey_level(view) / 10) * 10 for view in item.exo]


def layout(root, split='Seen', labels=SEEN, **extra):
    return DatasetLayout(root=str(root), split=split, labels=labels, **extra)


def messages(caplog, word):
    return [r.getMessage() for r in caplog.records if word in r.getMessage()]


def truncate(path: Path):
    """Cut an encoded noise image to 60 %: the header still parses, the decode fails."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    write_image(path, noise)
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size * 0.6)])


# ------------------------------------------------------------------------ training dataset
def test_train_dataset_is_indexed_by_exo_images_with_label_list_indices(tmp_path):
    build_tree(tmp_path)
    dataset = TrainDataset(layout(tmp_path))
    assert len(dataset) == sum(EXO_COUNTS.values())
    labels = [dataset[index].label for index in range(len(dataset))]
    names = [dataset[index].affordance for index in range(len(dataset))]
    assert labels == [SEEN.index('hold')] * 8 + [SEEN.index('pour')] * 2 == [11] * 8 + [21] * 2
    assert names == ['hold'] * 8 + ['pour'] * 2
    reordered = TrainDataset(layout(tmp_path, labels=('pour', 'sip', 'hold')))
    assert [reordered[index].label for index in (0, 9)] == [2, 0]  # list order, not folder order


def test_train_dataset_shapes_dtypes_and_collate(tmp_path):
    build_tree(tmp_path)
    dataset = TrainDataset(layout(tmp_path))
    item = dataset[0]
    assert item.ego.shape == (3, 224, 224) and item.exo.shape == (3, 3, 224, 224)
    assert item.ego.dtype == item.exo.dtype == torch.float32
    batch = collate_train_items([dataset[0], dataset[9]])
    assert batch.exo.shape == (2, 3, 3, 224, 224) and batch.ego.shape == (2, 3, 224, 224)
    assert batch.labels.dtype == torch.int64 and batch.labels.tolist() == [11, 21]
    assert batch.affordances == ['hold', 'pour']


def test_train_dataset_anchor_first_and_ego_from_same_affordance_and_object(tmp_path):
    build_tree(tmp_path)
    dataset = TrainDataset(layout(tmp_path))
    groups = [group for group, count in EXO_COUNTS.items() for _ in range(count)]
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index, group in enumerate(groups):
            item = dataset[index]
            assert exo_levels(item)[0] == 10 * index + 10
            assert grey_level(item.ego) in EGO_LEVELS[group]
    egos = set()
    for epoch in range(30):
        dataset.set_epoch(epoch)
        egos.add(grey_level(dataset[0].ego))
    assert egos == {200, 210}  # both ego files of hold/cup get drawn


def test_train_dataset_extra_exo_distinct_when_folder_has_more_than_e_files(tmp_path):
    build_tree(tmp_path)
    dataset = TrainDataset(layout(tmp_path))
    seen_levels = set()
    for epoch in range(10):
        dataset.set_epoch(epoch)
        for index in range(5):  # hold/cup: 5 files > E = 3, levels 10..50
            levels = exo_levels(dataset[index])
            assert len(set(levels)) == 3 and set(levels) <= {10, 20, 30, 40, 50}
            seen_levels.update(levels[1:])
    assert seen_levels == {10, 20, 30, 40, 50}


def test_train_dataset_draws_with_replacement_when_folder_has_at_most_e_files(tmp_path):
    build_tree(tmp_path)
    dataset = TrainDataset(layout(tmp_path))
    duplicates = 0
    for epoch in range(20):
        dataset.set_epoch(epoch)
        pour = exo_levels(dataset[8])  # pour/bottle: 2 files, levels 90 and 100
        assert len(pour) == 3 and set(pour) <= {90, 100} and len(set(pour)) < 3
        knife = exo_levels(dataset[5])  # hold/knife: exactly E = 3 files, levels 60..80
        assert set(knife) <= {60, 70, 80}
        duplicates += len(set(knife)) < 3
    assert duplicates > 0


def test_train_dataset_num_exo_sets_the_number_of_exo_views(tmp_path):
    build_tree(tmp_path)
    item = TrainDataset(layout(tmp_path, num_exo=4))[0]
    assert item.exo.shape == (4, 3, 224, 224) and len(set(exo_levels(item))) == 4


def unnormalise(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) normalised tensor -> (H, W, 3) float array on the 0..255 scale."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]  # (3, 1, 1)
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((image * std + mean) * 255).permute(1, 2, 0).numpy()


def test_train_transform_is_shorter_side_resize_then_random_crop_and_flip(tmp_path):
    """Output is a 224 window of the PIL-bilinear resized image (aspect kept), maybe flipped."""
    rows, cols = np.mgrid[0:512, 0:640]  # shorter side 512 -> 256 gives 256 x 320
    array = np.stack([cols * 255 // 639, rows * 255 // 511, (rows * 7 + cols * 3) % 256], -1)
    image = Image.fromarray(array.astype(np.uint8))
    resized = np.asarray(image.resize((320, 256), Image.BILINEAR), np.float32)  # (256, 320, 3)
    flips, corners = set(), set()
    for seed in range(12):
        out = unnormalise(train_transform(image, layout(tmp_path), random.Random(seed)))
        flip = bool(out[0, 0, 0] > out[0, -1, 0])  # red grows left to right unless flipped
        view = out[:, ::-1] if flip else out  # (224, 224, 3)
        tops = [t for t in range(33) if np.allclose(resized[t:t + 224, 0, 1], view[:, 0, 1],
                                                    atol=1e-3)]
        lefts = [c for c in range(97) if np.allclose(resized[0, c:c + 224, 0], view[0, :, 0],
                                                     atol=1e-3)]
        found = [(t, c) for t in tops for c in lefts
                 if np.allclose(resized[t:t + 224, c:c + 224], view, atol=1e-3)]
        assert found, f'seed {seed}: output is not a window of the resized image'
        flips.add(flip)
        corners.add(found[0])
    assert flips == {False, True} and len(corners) > 6


def test_train_dataset_is_deterministic_per_seed_epoch_and_index(tmp_path):
    base = build_tree(tmp_path)
    for index, path in enumerate(sorted((base / 'trainset').rglob('hold/cup/*.jpg'))):
        texture = np.random.default_rng(index).integers(0, 256, (30, 40, 3), dtype=np.uint8)
        write_image(path, texture)  # textured, so crops and flips show in the tensors
    first, second = TrainDataset(layout(tmp_path)), TrainDataset(layout(tmp_path))
    assert torch.equal(first[3].exo, second[3].exo) and torch.equal(first[3].ego, second[3].ego)
    second.set_epoch(1)
    assert not torch.equal(first[3].exo, second[3].exo)
    assert not torch.equal(first[3].ego, second[3].ego)
    assert not torch.equal(first[3].exo, TrainDataset(layout(tmp_path, seed=7))[3].exo)
    second.set_epoch(0)
    assert torch.equal(first[3].exo, second[3].exo)  # depends on nothing drawn before


def test_train_loader_batches_are_the_same_with_and_without_workers(tmp_path):
    build_tree(tmp_path)
    dataset = TrainDataset(layout(tmp_path))
    serial = list(build_train_loader(dataset, 4, epoch=2))
    parallel = list(build_train_loader(dataset, 4, workers=2, epoch=2))
    assert [len(batch.labels) for batch in serial] == [4, 4, 2]  # drop_last is off
    for one, two in zip(serial, parallel):
        assert torch.equal(one.exo, two.exo) and torch.equal(one.labels, two.labels)
    orders = [[grey_level(exo[0]) for batch in build_train_loader(dataset, 4, epoch=epoch)
               for exo in batch.exo] for epoch in (2, 3)]
    assert orders[0] == [grey_level(exo[0]) for batch in serial for exo in batch.exo]
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])
    assert dataset.epoch == 3


# ---------------------------------------------------------------------------- test dataset
def test_test_dataset_transform_and_gt_match_reference_formulas(tmp_path):
    base = build_tree(tmp_path)
    photo = np.random.default_rng(1).integers(0, 256, (37, 91, 3), dtype=np.uint8)
    write_image(base / 'testset/egocentric/hold/cup/t0.png', photo)  # replaces t0.jpg's image
    (base / 'testset/egocentric/hold/cup/t0.jpg').unlink()
    gt = (np.random.default_rng(2).random((45, 70)) * 255).astype(np.uint8)
    write_gt(base / 'testset/GT/hold/cup/t0.png', gt)
    item = TestDataset(layout(tmp_path))[0]
    resized = Image.fromarray(photo).resize((224, 224), Image.BILINEAR)
    expected = TF.normalize(TF.to_tensor(resized), IMAGENET_MEAN, IMAGENET_STD)
    assert item.image.shape == (3, 224, 224) and item.image.dtype == torch.float32
    assert torch.equal(item.image, expected)  # same float32 operations, bit for bit
    expected_gt = cv2.resize(gt / 255.0, (224, 224), interpolation=cv2.INTER_LINEAR)
    assert item.gt.dtype == np.float64 and item.gt.shape == (224, 224)
    np.testing.assert_allclose(item.gt, expected_gt, rtol=0, atol=1e-12)
    assert 0.0 <= item.gt.min() and item.gt.max() <= 1.0
    assert (item.label, item.affordance, item.object_name, item.path) == (
        SEEN.index('hold'), 'hold', 'cup', 'hold/cup/t0.png')


def test_test_dataset_uses_real_stem_and_any_image_suffix_case(tmp_path):
    base = build_tree(tmp_path)
    gt = np.full((48, 64), 128, np.uint8)
    write_image(base / 'testset/egocentric/pour/bottle/long.jpeg', 60)
    write_gt(base / 'testset/GT/pour/bottle/long.png', gt)
    write_image(base / 'testset/egocentric/pour/bottle/UP.PNG', 70)
    write_gt(base / 'testset/GT/pour/bottle/UP.png', gt)
    (base / 'testset/egocentric/pour/bottle/notes.txt').write_text('not an image')
    dataset = TestDataset(layout(tmp_path))
    assert [dataset[i].path for i in range(len(dataset))] == [
        'hold/cup/t0.jpg', 'hold/cup/t1.jpg', 'pour/bottle/UP.PNG', 'pour/bottle/long.jpeg']
    assert dataset[3].label == SEEN.index('pour')


def test_test_loader_collates_images_labels_and_float64_gts(tmp_path):
    build_tree(tmp_path)
    batches = list(build_test_loader(TestDataset(layout(tmp_path)), batch_size=2))
    assert len(batches) == 1 and batches[0].images.shape == (2, 3, 224, 224)
    assert batches[0].gts.shape == (2, 224, 224) and batches[0].gts.dtype == np.float64
    assert batches[0].labels.tolist() == [11, 11] and batches[0].paths[1] == 'hold/cup/t1.jpg'


def test_test_dataset_writes_no_cache_file(tmp_path, monkeypatch):
    build_tree(tmp_path / 'data')
    workdir = tmp_path / 'cwd'
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    dataset = TestDataset(layout(tmp_path / 'data'))
    dataset[0], dataset[1]
    assert list(workdir.iterdir()) == []
    assert not list((tmp_path / 'data').rglob('*.t7'))


def test_hico_layout_has_no_split_level(tmp_path):
    build_tree(tmp_path, split=None)
    train = TrainDataset(layout(tmp_path, split=None, labels=HICO))
    test = TestDataset(layout(tmp_path, split=None, labels=HICO))
    assert len(train) == 10 and len(test) == 2
    assert train[0].label == HICO.index('hold') == 2 and train[9].label == HICO.index('pour')
    assert test[0].label == 2


# -------------------------------------------------------------------------------- bad data
def test_missing_ego_folder_is_skipped_with_one_warning(tmp_path, caplog):
    base = build_tree(tmp_path)
    shutil.rmtree(base / 'trainset/egocentric/pour')
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dataset = TrainDataset(layout(tmp_path))
    assert len(dataset) == 8 and {dataset[i].affordance for i in range(8)} == {'hold'}
    warnings = messages(caplog, 'egocentric')
    assert len(warnings) == 1
    assert 'skipped 1 ' in warnings[0] and 'pour/bottle (2 exo images)' in warnings[0]


def test_corrupt_training_images_are_skipped_at_index_time(tmp_path, caplog):
    base = build_tree(tmp_path)
    (base / 'trainset/exocentric/hold/cup/x0.jpg').write_bytes(b'not a jpeg')
    (base / 'trainset/exocentric/hold/cup/x1.jpg').write_bytes(b'')
    (base / 'trainset/egocentric/hold/knife/e0.jpg').write_bytes(b'<html>')
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dataset = TrainDataset(layout(tmp_path))
    assert len(dataset) == 3 + 2  # hold/cup lost 2 files, hold/knife lost its only ego
    unreadable = messages(caplog, 'unreadable')
    assert len(unreadable) == 1 and 'skipped 3 unreadable' in unreadable[0]
    assert 'x0.jpg' in unreadable[0] and 'x1.jpg' in unreadable[0]
    assert 'e0.jpg' in unreadable[0]
    assert 'hold/knife' in ' '.join(messages(caplog, 'egocentric'))
    assert {exo_levels(dataset[i])[0] for i in range(3)} == {30, 40, 50}


def test_truncated_training_image_is_replaced_at_load_time_with_counted_warning(
        tmp_path, caplog):
    base = build_tree(tmp_path)
    truncate(base / 'trainset/exocentric/pour/bottle/x1.jpg')  # pour items are 8 and 9
    dataset = TrainDataset(layout(tmp_path))
    assert len(dataset) == 10  # the header parses, so it is indexed
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        items = [dataset[9] for _ in range(3)]
    warnings = messages(caplog, 'unreadable image')
    assert len(warnings) == 1 and 'x1.jpg' in warnings[0] and '1 so far' in warnings[0]
    # pour/bottle has 2 files, so every pour item uses x1: item 9 wraps round to item 0
    assert all(torch.equal(item.exo, dataset[0].exo) for item in items)
    assert items[0].affordance == 'hold'


def test_missing_and_corrupt_gt_are_skipped_with_one_warning_each(tmp_path, caplog):
    base = build_tree(tmp_path)
    (base / 'testset/GT/hold/cup/t0.png').unlink()
    (base / 'testset/GT/hold/cup/t1.png').write_bytes(b'broken')
    write_image(base / 'testset/egocentric/hold/cup/t2.jpg', 50)
    truncate(base / 'testset/egocentric/hold/cup/t3.jpg')
    write_gt(base / 'testset/GT/hold/cup/t3.png', np.zeros((30, 40), np.uint8))
    write_image(base / 'testset/egocentric/hold/cup/t4.jpg', 60)
    write_gt(base / 'testset/GT/hold/cup/t4.png', np.zeros((30, 40), np.uint8))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dataset = TestDataset(layout(tmp_path))
    assert [dataset[i].path for i in range(len(dataset))] == ['hold/cup/t4.jpg']
    missing = messages(caplog, 'without a GT map')
    assert len(missing) == 1 and 'skipped 2 ' in missing[0]
    assert 't0.jpg' in missing[0] and 't2.jpg' in missing[0]
    unreadable = messages(caplog, 'unreadable')
    assert len(unreadable) == 1 and 'skipped 2 ' in unreadable[0]
    assert 't1.jpg' in unreadable[0] and 't3.jpg' in unreadable[0]


def test_test_image_corrupted_after_indexing_is_replaced(tmp_path, caplog):
    base = build_tree(tmp_path)
    dataset = TestDataset(layout(tmp_path))
    (base / 'testset/GT/hold/cup/t0.png').write_bytes(b'gone bad')
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        item = dataset[0]
    assert item.path == 'hold/cup/t1.jpg'  # the path says which file was really used
    assert len(messages(caplog, 'unreadable image')) == 1


@pytest.mark.parametrize('make, expected', [
    ('missing', 'does not exist'),
    ('empty', 'contains nothing'),
    ('flat', 'trainset/exocentric/hold/x.jpg'),  # object level missing: shows what it found
    ('no_images', 'no .jpg/.jpeg/.png files'),
])
def test_empty_or_wrong_layout_is_a_clear_error(tmp_path, make, expected):
    root = tmp_path / 'root'
    if make != 'missing':
        root.mkdir()
    if make == 'flat':
        write_image(root / 'Seen/trainset/exocentric/hold/x.jpg', 1)
    if make == 'no_images':
        (root / 'Seen/trainset/exocentric/hold/cup').mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as error:
        TrainDataset(layout(root))
    text = str(error.value)
    assert 'Seen/trainset/exocentric/<affordance>/<object>/*.jpg' in text and expected in text


def test_split_mismatch_errors_give_a_hint(tmp_path):
    build_tree(tmp_path / 'hico', split=None)
    with pytest.raises(DatasetLayoutError, match='HICO-IIF: use split=null') as error:
        TestDataset(layout(tmp_path / 'hico'))
    assert 'Seen/testset/GT/<affordance>/<object>/<stem>.png' in str(error.value)
    build_tree(tmp_path / 'agd')
    with pytest.raises(DatasetLayoutError, match="use split='Seen' or 'Unseen'"):
        TrainDataset(layout(tmp_path / 'agd', split=None))


def test_unknown_affordance_folders_are_reported_once_and_skipped(tmp_path, caplog):
    base = build_tree(tmp_path)
    write_image(base / 'trainset/exocentric/juggle/ball/x.jpg', 1)
    write_image(base / 'trainset/exocentric/wave/flag/x.jpg', 1)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dataset = TrainDataset(layout(tmp_path))
    assert len(dataset) == 10
    warnings = messages(caplog, 'not in the label list')
    assert len(warnings) == 1 and 'skipped 2 ' in warnings[0]
    assert 'juggle' in warnings[0] and 'wave' in warnings[0]


def test_wrong_label_set_error_names_the_unknown_folders(tmp_path):
    build_tree(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"\['hold', 'pour'\] are not in the label"):
        TrainDataset(layout(tmp_path, labels=('sip', 'stir')))


@pytest.mark.parametrize('extra', [
    {'labels': ()}, {'labels': ('hold', 'hold')}, {'num_exo': 0}, {'image_size': 300},
    {'split': ''}])
def test_dataset_layout_rejects_unusable_settings(tmp_path, extra):
    settings = {'root': str(tmp_path), 'split': 'Seen', 'labels': SEEN, **extra}
    with pytest.raises(ValueError):
        DatasetLayout(**settings)


def test_layout_for_model_uses_the_model_preprocessing(tmp_path, tiny_config):
    build_tree(tmp_path)
    config = dataclasses.replace(tiny_config, dino_mean=(0.5, 0.5, 0.5),
                                 dino_std=(0.25, 0.25, 0.25))
    model_layout = layout_for_model(str(tmp_path), 'Seen', config)
    assert (model_layout.labels, model_layout.mean, model_layout.std) == (
        SEEN, (0.5,) * 3, (0.25,) * 3)
    item = TestDataset(model_layout)[0]
    photo = read_rgb(tmp_path / 'Seen' / 'testset' / 'egocentric' / item.path)
    expected = TF.normalize(TF.to_tensor(photo.resize((224, 224), Image.BILINEAR)),
                            [0.5] * 3, [0.25] * 3)
    assert torch.allclose(item.image, expected, atol=1e-6)
