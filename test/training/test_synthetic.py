"""Tests for training.synthetic: AGD20K layout, determinism, GT placement and the CLI."""

import json
from pathlib import Path
import re

import cv2
import numpy as np
import pytest

from training import synthetic, synthetic_render

LAYOUT_PATTERN = re.compile(
    r'^Seen/(?:trainset/(?:egocentric|exocentric)|testset/egocentric)/(\w+)/(\w+)/\2_\d{6}\.jpg$'
    r'|^Seen/testset/GT/(\w+)/(\w+)/\4_\d{6}\.png$')
SMALL = synthetic.SyntheticConfig(seed=0, train_per_object=2, test_per_object=3)


@pytest.fixture(scope='module')
def small_build(tmp_path_factory):
    """Build the small configuration once for the read-only tests."""
    out_dir = tmp_path_factory.mktemp('synthetic')
    return synthetic.build_synthetic_dataset(out_dir, SMALL)


def _relative_files(root: Path):
    """Return every file under ``root`` as a sorted list of POSIX relative paths."""
    return sorted(path.relative_to(root).as_posix() for path in root.rglob('*') if path.is_file())


def _read_tree_bytes(root: Path):
    """Map every relative file path under ``root`` to its bytes."""
    return {name: (root / name).read_bytes() for name in _relative_files(root)}


def _folder_file_count(root: Path, tree: str, affordance: str, object_name: str) -> int:
    """Count the files of one ``<tree>/<affordance>/<object>`` folder."""
    return len(list((root / 'Seen' / tree / affordance / object_name).iterdir()))


def test_build_writes_exactly_the_agd20k_layout(small_build):
    """Every file sits in the AGD20K tree with the configured counts."""
    root = small_build.root
    files = _relative_files(root)
    assert 'Seen/synthetic_meta.json' in files
    data_files = [name for name in files if name != 'Seen/synthetic_meta.json']
    assert len(data_files) == sum(small_build.counts.values())
    for name in data_files:
        match = LAYOUT_PATTERN.match(name)
        assert match, f'{name} is not in the AGD20K layout'
        affordance = match.group(1) or match.group(3)
        object_name = match.group(2) or match.group(4)
        assert object_name in synthetic.AFFORDANCE_PARTS[affordance]
    expected_counts = {'trainset/egocentric': 2, 'trainset/exocentric': 2,
                       'testset/egocentric': 3, 'testset/GT': 3}
    for affordance, parts_by_object in synthetic.AFFORDANCE_PARTS.items():
        for object_name in parts_by_object:
            for tree, count in expected_counts.items():
                assert _folder_file_count(root, tree, affordance, object_name) == count


def test_every_test_image_has_a_gt_png_with_the_same_stem(small_build):
    """Each test image has its GT under the name the reference loader expects."""
    test_dir = small_build.root / 'Seen' / 'testset'
    images = sorted(test_dir.glob('egocentric/*/*/*.jpg'))
    assert len(images) == small_build.counts['test_egocentric'] == 9 * 3
    for image_path in images:
        relative = image_path.relative_to(test_dir / 'egocentric')
        # The reference loader swaps the last three characters of the name for 'png'.
        gt_path = test_dir / 'GT' / relative.parent / (relative.name[:-3] + 'png')
        gt = cv2.imread(str(gt_path), cv2.IMREAD_UNCHANGED)
        assert gt is not None, f'missing GT for {image_path}'
        assert gt.dtype == np.uint8 and gt.shape == (SMALL.image_size, SMALL.image_size)
        assert gt.max() == 255
    assert len(list(test_dir.glob('GT/*/*/*'))) == len(images)


def test_images_are_colour_jpegs_of_the_configured_size(small_build):
    """Images are colour, of the configured size and cluttered."""
    for spec in small_build.items[:12]:
        image = cv2.imread(str(spec.image_path(small_build.root)), cv2.IMREAD_UNCHANGED)
        assert image.shape == (SMALL.image_size, SMALL.image_size, 3)
        assert image.std() > 20.0  # cluttered, not a flat canvas


def test_same_seed_is_byte_identical_and_another_seed_differs(tmp_path):
    """Builds are byte-identical per seed and differ across seeds."""
    config = synthetic.SyntheticConfig(seed=7, train_per_object=1, test_per_object=1,
                                       image_size=96)
    first = _read_tree_bytes(synthetic.build_synthetic_dataset(tmp_path / 'a', config).root)
    second = _read_tree_bytes(synthetic.build_synthetic_dataset(tmp_path / 'b', config).root)
    other_config = synthetic.SyntheticConfig(seed=8, train_per_object=1, test_per_object=1,
                                             image_size=96)
    other = _read_tree_bytes(synthetic.build_synthetic_dataset(tmp_path / 'c', other_config).root)
    assert first == second
    assert sorted(other) == sorted(first)
    images = [name for name in first if name.endswith('.jpg')]
    assert all(other[name] != first[name] for name in images)


def test_gt_mass_lies_on_the_acting_part(small_build):
    """The GT file is the blurred acting part: mass and peak on that part."""
    test_items = [spec for spec in small_build.items if spec.split == 'testset']
    for spec in test_items:
        rendered = synthetic.render_item(SMALL, spec)
        gt_file = cv2.imread(str(spec.gt_path(small_build.root)), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(gt_file, rendered.gt)  # the masks belong to the file
        acting_mask = rendered.part_masks[rendered.acting_part]
        gt_mass = gt_file.astype(np.float64)
        acting_fraction = gt_mass[acting_mask].sum() / gt_mass.sum()
        assert acting_fraction > 0.55, (spec, acting_fraction)
        assert acting_mask[gt_file == 255].all(), f'GT peak off the {rendered.acting_part}'
        for part_name, mask in rendered.part_masks.items():
            if part_name != rendered.acting_part:
                assert gt_mass[mask].sum() / gt_mass.sum() < 0.25, (spec, part_name)


def test_cut_with_knife_gt_is_on_the_blade_not_the_handle():
    """cut_with on a knife highlights the blade, not the handle."""
    spec = synthetic.ItemSpec('testset', 'egocentric', 'cut_with', 'knife', 0)
    rendered = synthetic.render_item(SMALL, spec)
    gt_mass = rendered.gt.astype(np.float64)
    assert rendered.acting_part == 'blade'
    assert gt_mass[rendered.part_masks['blade']].sum() / gt_mass.sum() > 0.7
    assert gt_mass[rendered.part_masks['handle']].sum() / gt_mass.sum() < 0.05
    peak_y, peak_x = np.unravel_index(np.argmax(rendered.gt), rendered.gt.shape)
    assert rendered.part_masks['blade'][peak_y, peak_x]


def test_every_part_of_every_object_is_visible(small_build):
    """No part is hidden by another part of its object."""
    visible_parts = {}
    for spec in small_build.items:
        rendered = synthetic.render_item(SMALL, spec)
        for part_name, mask in rendered.part_masks.items():
            assert mask.sum() > 50, (spec, part_name)
            visible_parts.setdefault(spec.object_name, set()).add(part_name)
    for object_name, kind in synthetic.OBJECTS.items():
        assert visible_parts[object_name] == {part.name for part in kind.parts}


def _render_without_actor(config, spec):
    """Replay an item's random draws up to (not including) the actor."""
    rng = np.random.default_rng(synthetic._seed_entropy(config.seed, spec))
    image = synthetic_render.draw_clutter(rng, config.image_size)
    synthetic_render.draw_object(rng, image, synthetic.OBJECTS[spec.object_name],
                                 config.exo_long_side)
    return image


def test_exocentric_actor_touches_the_acting_part():
    """The exocentric actor is drawn over a pixel of the acting part."""
    config = synthetic.SyntheticConfig(train_per_object=3)
    exo_items = [spec for spec in synthetic.iter_item_specs(config) if spec.view == 'exocentric']
    assert len(exo_items) == 9 * 3
    for spec in exo_items:
        rendered = synthetic.render_item(config, spec)
        assert rendered.gt is None
        contact_x, contact_y = rendered.contact_xy
        assert rendered.part_masks[rendered.acting_part][contact_y, contact_x], spec
        # The actor's hand (or hips) covers the contact pixel and its neighbours.
        without_actor = _render_without_actor(config, spec)
        window = np.s_[contact_y - 2:contact_y + 3, contact_x - 2:contact_x + 3]
        changed = np.any(rendered.image_bgr[window] != without_actor[window], axis=-1)
        assert changed.all(), spec
        # The replay is faithful: outside the actor the two images agree.
        assert 0.0 < np.mean(np.any(rendered.image_bgr != without_actor, axis=-1)) < 0.25


def test_meta_json_records_labels_parts_seed_and_counts(small_build):
    """The meta file records labels, the part mapping, the seed and counts."""
    meta = json.loads((small_build.root / 'Seen' / 'synthetic_meta.json').read_text())
    assert meta['config']['seed'] == 0
    assert meta['labels'] == sorted(synthetic.AFFORDANCE_PARTS) == list(small_build.labels)
    assert len(meta['labels']) >= 5 and len(meta['objects']) >= 4
    assert len(meta['affordance_parts']['hold']) >= 2  # one label shared by several objects
    assert meta['affordance_parts']['cut_with']['knife'] == 'blade'
    assert meta['counts'] == small_build.counts
    for affordance, parts_by_object in meta['affordance_parts'].items():
        for object_name, part_name in parts_by_object.items():
            assert part_name in meta['object_parts'][object_name], (affordance, object_name)


def test_labels_are_agd20k_seen_labels():
    """Every synthetic label is a real AGD20K Seen label."""
    vocabulary = pytest.importorskip('affordance_grounding.vocabulary')
    assert set(synthetic.AFFORDANCE_PARTS) <= set(vocabulary.AGD20K_SEEN)


def test_cli_main_builds_into_a_tmp_dir(tmp_path, capsys):
    """main(argv) builds the set and prints a summary."""
    exit_code = synthetic.main(['--out', str(tmp_path), '--seed', '3', '--train-per-object', '1',
                                '--test-per-object', '1', '--size', '96'])
    assert exit_code == 0
    printed = capsys.readouterr().out
    assert 'wrote 27 images' in printed  # Seen: 18 training + 9 test images
    assert 'wrote 25 images' in printed  # Unseen: the same 18 training + 7 test images
    meta = json.loads((tmp_path / 'Seen' / 'synthetic_meta.json').read_text())
    assert meta['config']['seed'] == 3 and meta['config']['image_size'] == 96
    assert len(list((tmp_path / 'Seen').rglob('*.jpg'))) == 27
    assert len(list((tmp_path / 'Seen').rglob('*.png'))) == 9


def test_build_refuses_to_overwrite_unless_asked(tmp_path):
    """An existing Seen/ is kept unless overwrite is set, then replaced."""
    config = synthetic.SyntheticConfig(train_per_object=1, test_per_object=1, image_size=64)
    synthetic.build_synthetic_dataset(tmp_path, config)
    stale_file = tmp_path / 'Seen' / 'testset' / 'GT' / 'stale.png'
    stale_file.write_bytes(b'')
    with pytest.raises(FileExistsError, match='overwrite'):
        synthetic.build_synthetic_dataset(tmp_path, config)
    synthetic.build_synthetic_dataset(tmp_path, config, overwrite=True)
    assert not stale_file.exists()


@pytest.mark.parametrize('field, value', [('seed', -1), ('train_per_object', 0),
                                          ('test_per_object', 0), ('image_size', 32),
                                          ('jpeg_quality', 101), ('gt_blur_sigma_frac', 0.0)])
def test_config_rejects_out_of_range_values(field, value):
    """Out-of-range configuration values raise ValueError naming the field."""
    with pytest.raises(ValueError, match=field):
        synthetic.SyntheticConfig(**{field: value})


def test_render_item_rejects_an_affordance_that_does_not_act_on_the_object():
    """Asking for sit_on on a knife raises ValueError naming the pair."""
    spec = synthetic.ItemSpec('testset', 'egocentric', 'sit_on', 'knife', 0)
    with pytest.raises(ValueError, match="'sit_on'.*'knife'"):
        synthetic.render_item(SMALL, spec)


def test_cli_refuses_an_existing_setting_with_one_line(tmp_path, capsys):
    """A second build without --overwrite fails with exit code 2 and a one-line error."""
    argv = ['--out', str(tmp_path), '--train-per-object', '1', '--test-per-object', '1',
            '--size', '64', '--settings', 'Seen']
    assert synthetic.main(argv) == 0
    assert synthetic.main(argv) == 2
    assert 'overwrite' in capsys.readouterr().err


def test_unseen_setting_tests_only_objects_never_in_training(tmp_path):
    """Unseen: Seen objects' training images, test images of the Unseen kinds only."""
    config = synthetic.SyntheticConfig(train_per_object=1, test_per_object=2, image_size=96)
    seen = synthetic.build_synthetic_dataset(tmp_path, config)
    unseen = synthetic.build_synthetic_dataset(tmp_path, config, setting='Unseen')
    root = tmp_path / 'Unseen'
    train_objects = {path.parent.name for path in root.glob('trainset/*/*/*/*.jpg')}
    test_objects = {path.parent.name for path in root.glob('testset/egocentric/*/*/*.jpg')}
    assert train_objects == set(synthetic.OBJECTS)
    assert test_objects == set(synthetic.UNSEEN_OBJECTS)
    assert not train_objects & test_objects
    for path in root.glob('testset/egocentric/*/*/*.jpg'):
        gt = path.parents[3] / 'GT' / path.parent.parent.name / path.parent.name / (
            path.stem + '.png')
        assert gt.is_file()
        assert path.parent.name in synthetic.UNSEEN_AFFORDANCE_PARTS[path.parent.parent.name]
    # Every label is tested in both settings, and the training images are the same files.
    assert ({p.parent.parent.name for p in root.glob('testset/egocentric/*/*/*.jpg')}
            == set(synthetic.AFFORDANCE_PARTS))
    for path in root.glob('trainset/*/*/*/*.jpg'):
        twin = tmp_path / 'Seen' / path.relative_to(root)
        assert twin.read_bytes() == path.read_bytes()
    assert unseen.counts['train_exocentric'] == seen.counts['train_exocentric']
    meta = json.loads((root / 'synthetic_meta.json').read_text())
    assert meta['split'] == 'Unseen' and meta['test_affordance_parts']['cut_with'] == {
        'cleaver': 'blade'}


def test_unseen_gt_lies_on_the_analogous_part():
    """A cleaver's cut_with GT covers its blade; a mug's drink_with GT its rim."""
    for affordance, name, part in (('cut_with', 'cleaver', 'blade'), ('drink_with', 'mug', 'rim'),
                                   ('sit_on', 'stool', 'seat')):
        item = synthetic.render_item(SMALL, synthetic.ItemSpec(
            'testset', 'egocentric', affordance, name, 0, 'Unseen'))
        assert item.acting_part == part
        weights = item.gt.astype(float)
        assert weights[item.part_masks[part]].sum() > 0.6 * weights.sum()


def test_seen_items_keep_their_seeds_when_unseen_objects_are_added():
    """The Seen object indices come first, so their images do not change with the catalogue."""
    assert [synthetic.object_index(name) for name in sorted(synthetic.OBJECTS)] == list(
        range(len(synthetic.OBJECTS)))
    assert min(synthetic.object_index(name) for name in synthetic.UNSEEN_OBJECTS) == len(
        synthetic.OBJECTS)
