"""Strict model configuration: YAML round trip, unknown keys, label-set names."""

import dataclasses

from affordance_grounding.config import (
    config_from_dict, IMAGENET_MEAN, IMAGENET_STD, load_model_config, ModelConfig)
from affordance_grounding.vocabulary import AGD20K_SEEN, AGD20K_UNSEEN
import pytest
import yaml


def test_model_config_defaults_match_reference_recipe():
    config = ModelConfig()
    assert config.clip_model == 'ViT-B-16-quickgelu'
    assert config.labels == AGD20K_SEEN
    assert config.image_size == 224
    assert config.clip_mean == config.dino_mean == (0.485, 0.456, 0.406)
    assert config.clip_std == config.dino_std == (0.229, 0.224, 0.225)


def test_config_yaml_round_trip_preserves_every_field(tmp_path, tiny_config):
    config = dataclasses.replace(tiny_config, labels='unseen', clip_mean=(0.5, 0.25, 0.125),
                                 cache_dir='/tmp/cache')
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(config.to_dict()))
    loaded = load_model_config(str(path))
    assert loaded == config
    assert config_from_dict(config.to_dict()) == config
    assert isinstance(loaded.labels, tuple)
    assert isinstance(loaded.clip_mean, tuple)


def test_config_to_dict_uses_plain_types(tiny_config):
    data = tiny_config.to_dict()
    assert isinstance(data['labels'], list)
    assert data['labels'] == list(AGD20K_SEEN)
    assert data['dino_std'] == list(IMAGENET_STD)
    assert data['clip_overrides']['vision_cfg']['layers'] == 2


def test_config_from_dict_rejects_unknown_key():
    with pytest.raises(ValueError, match='clip_wieghts'):
        config_from_dict({'clip_wieghts': 'openai'})


def test_load_model_config_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / 'typo.yaml'
    path.write_text('image_size: 224\nlabel: seen\n')
    with pytest.raises(ValueError) as info:
        load_model_config(str(path))
    assert "'label'" in str(info.value)
    assert str(path) in str(info.value)


def test_load_model_config_label_set_name_resolves(tmp_path):
    path = tmp_path / 'unseen.yaml'
    path.write_text('labels: unseen\n')
    config = load_model_config(str(path))
    assert len(config.labels) == 25
    assert config.labels == AGD20K_UNSEEN
    assert config.clip_mean == IMAGENET_MEAN


def test_load_model_config_tiny_file_is_small(tiny_config):
    assert tiny_config.clip_weights is None
    assert tiny_config.dino_weights is None
    assert tiny_config.dino_overrides == {'embed_dim': 48, 'depth': 2, 'num_heads': 6}
    assert len(tiny_config.labels) == 36


def test_load_model_config_missing_file_names_path(tmp_path):
    path = tmp_path / 'absent.yaml'
    with pytest.raises(FileNotFoundError, match='absent.yaml'):
        load_model_config(str(path))


def test_load_model_config_rejects_non_mapping(tmp_path):
    path = tmp_path / 'list.yaml'
    path.write_text('- seen\n- unseen\n')
    with pytest.raises(ValueError, match='mapping'):
        load_model_config(str(path))


@pytest.mark.parametrize('fields, message', [
    ({'labels': []}, 'empty'),
    ({'labels': ['hold', 'hold']}, 'duplicates'),
    ({'image_size': 0}, 'positive'),
    ({'clip_std': [0.2, 0.2]}, '3 values'),
])
def test_model_config_rejects_invalid_values(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**fields)
