"""Bundle save/load round trip and clear errors for bad checkpoint files."""

from affordance_grounding.model.checkpoint import (
    BUNDLE_FORMAT, CheckpointError, load_bundle, load_grounder, save_bundle)
from affordance_grounding.vocabulary import AGD20K_SEEN, AGD20K_UNSEEN
import pytest
import torch


@pytest.fixture(scope='module')
def bundle_path(tiny_grounder, tmp_path_factory):
    """Save the tiny grounder with embedded backbones once."""
    folder = tmp_path_factory.mktemp('bundle')
    return save_bundle(str(folder / 'tiny.pt'), tiny_grounder, include_backbones=True,
                       metadata={'epoch': 3})


def test_save_bundle_writes_plain_weights_only_file(bundle_path, tiny_grounder):
    bundle = torch.load(bundle_path, map_location='cpu', weights_only=True)
    assert bundle['format'] == BUNDLE_FORMAT
    assert bundle['labels'] == list(AGD20K_SEEN)
    assert bundle['config'] == tiny_grounder.config.to_dict()
    assert bundle['metadata'] == {'epoch': 3}
    assert bundle['person_text'] is None
    assert set(bundle['backbones']) == {'clip', 'dino'}
    assert torch.equal(bundle['item_text'], tiny_grounder.item_text)
    for key, value in tiny_grounder.head.state_dict().items():
        assert torch.equal(bundle['head'][key], value), key


def test_save_bundle_leaves_no_temporary_file(bundle_path):
    assert sorted(p.name for p in bundle_path.parent.iterdir()) == ['tiny.pt']


def test_load_grounder_round_trip_gives_identical_maps(bundle_path, tiny_grounder,
                                                       tiny_images):
    loaded = load_grounder(str(bundle_path))
    assert not loaded.training
    assert loaded.labels == tiny_grounder.labels
    with torch.no_grad():
        expected = tiny_grounder(tiny_images)
        actual = loaded(tiny_images)
        expected_one = tiny_grounder(tiny_images, torch.tensor([3, 11, 20]))
        actual_one = loaded(tiny_images, torch.tensor([3, 11, 20]))
    for name in ('cam', 'affinity', 'calibrated', 'calibrated_local_mean'):
        torch.testing.assert_close(getattr(actual, name), getattr(expected, name),
                                   atol=0, rtol=0)
        torch.testing.assert_close(getattr(actual_one, name), getattr(expected_one, name),
                                   atol=0, rtol=0)


def test_load_grounder_truncated_file_raises_checkpoint_error(bundle_path, tmp_path):
    data = bundle_path.read_bytes()
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_grounder(str(truncated))
    assert str(truncated) in str(info.value)
    assert 'truncated' in str(info.value)


def test_load_grounder_garbage_file_raises_checkpoint_error(tmp_path):
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(CheckpointError, match='corrupt'):
        load_grounder(str(garbage))


def test_load_grounder_missing_file_raises_checkpoint_error(tmp_path):
    missing = tmp_path / 'absent.pt'
    with pytest.raises(CheckpointError, match='not found'):
        load_grounder(str(missing))


def test_load_grounder_label_mismatch_raises_checkpoint_error(bundle_path):
    with pytest.raises(CheckpointError) as info:
        load_grounder(str(bundle_path), expected_labels=AGD20K_UNSEEN)
    assert '36 labels' in str(info.value)
    assert '25 labels' in str(info.value)


def test_load_grounder_accepts_matching_expected_labels(bundle_path):
    assert load_grounder(str(bundle_path), expected_labels=AGD20K_SEEN).labels == AGD20K_SEEN


def test_load_bundle_rejects_other_dicts(tmp_path):
    path = tmp_path / 'plain.pt'
    torch.save({'weights': torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=BUNDLE_FORMAT):
        load_bundle(str(path))


def test_load_bundle_points_official_state_dicts_to_importer(tmp_path):
    path = tmp_path / 'official.pth'
    torch.save({'aff_classifier.weight': torch.zeros(36, 4, 1, 1)}, path)
    with pytest.raises(CheckpointError, match='import_official'):
        load_bundle(str(path))


def test_load_bundle_rejects_non_dict_payload(tmp_path):
    path = tmp_path / 'tensor.pt'
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match='expected a dict'):
        load_bundle(str(path))


def test_load_grounder_head_not_fitting_config_raises_checkpoint_error(bundle_path, tmp_path):
    bundle = torch.load(bundle_path, map_location='cpu', weights_only=True)
    bundle['head']['aff_classifier.weight'] = bundle['head']['aff_classifier.weight'][:25]
    bundle['head']['aff_classifier.bias'] = bundle['head']['aff_classifier.bias'][:25]
    path = tmp_path / 'misfit.pt'
    torch.save(bundle, path)
    with pytest.raises(CheckpointError, match='do not fit'):
        load_grounder(str(path))


def test_save_bundle_embeds_random_backbones_by_default(tiny_grounder, tmp_path):
    path = save_bundle(str(tmp_path / 'default.pt'), tiny_grounder)
    bundle = torch.load(path, weights_only=True)
    assert set(bundle['backbones']) == {'clip', 'dino'}


def test_save_bundle_refuses_to_drop_random_backbones(tiny_grounder, tmp_path):
    with pytest.raises(ValueError, match='include_backbones=True'):
        save_bundle(str(tmp_path / 'lossy.pt'), tiny_grounder, include_backbones=False)
    assert not (tmp_path / 'lossy.pt').exists()
