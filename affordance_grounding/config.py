"""Model configuration: frozen dataclasses and a strict YAML loader.

The configuration travels with every checkpoint bundle, so a model can be rebuilt exactly
(architectures, weight sources, labels and the preprocessing it was trained with).
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Type, TypeVar

from affordance_grounding.vocabulary import AGD20K_SEEN, get_label_set
import yaml

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

CALIBRATIONS: Tuple[str, ...] = ('none', 'clip', 'clip_local_mean')

ConfigT = TypeVar('ConfigT')


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network.

    Attributes:
        clip_model: open_clip architecture name. The OpenAI ViT-B/16 weights need the
            ``-quickgelu`` variant (plain GELU moves the maps by several percent).
        clip_weights: open_clip pretrained tag (``openai``), a local checkpoint path, or
            ``None`` for random initialisation (tests, tiny models).
        clip_overrides: Keyword overrides for ``open_clip.create_model`` (e.g. a small
            ``vision_cfg``/``text_cfg`` for tests).
        dino_model: timm architecture name.
        dino_weights: ``pretrained`` (timm hub/cache), a local checkpoint path, or ``None``.
        dino_overrides: Keyword overrides for ``timm.create_model`` (e.g. ``depth``).
        labels: Affordance labels in classifier order, or a label-set name (``seen``,
            ``unseen``, ``hico_iif``).
        image_size: Square network input side in pixels.
        clip_mean: Normalisation mean fed to CLIP. SelectiveCL feeds ImageNet statistics to
            both backbones (reference behaviour, kept on purpose).
        clip_std: Normalisation std fed to CLIP.
        dino_mean: Normalisation mean fed to DINO.
        dino_std: Normalisation std fed to DINO.
        head_hidden_ratio: Width ratio of the aff_proj MLP hidden layer (1536 / 384 = 4).
        cache_dir: Optional download/cache folder for open_clip weights.
    """

    clip_model: str = 'ViT-B-16-quickgelu'
    clip_weights: Optional[str] = 'openai'
    clip_overrides: Dict[str, Any] = field(default_factory=dict)
    dino_model: str = 'vit_small_patch16_224.dino'
    dino_weights: Optional[str] = 'pretrained'
    dino_overrides: Dict[str, Any] = field(default_factory=dict)
    labels: Tuple[str, ...] = AGD20K_SEEN
    image_size: int = 224
    clip_mean: Tuple[float, float, float] = IMAGENET_MEAN
    clip_std: Tuple[float, float, float] = IMAGENET_STD
    dino_mean: Tuple[float, float, float] = IMAGENET_MEAN
    dino_std: Tuple[float, float, float] = IMAGENET_STD
    head_hidden_ratio: int = 4
    cache_dir: Optional[str] = None

    def __post_init__(self):
        """Validate and normalise field types (YAML gives lists where tuples are meant)."""
        if isinstance(self.labels, str):
            object.__setattr__(self, 'labels', get_label_set(self.labels))
        for name in ('labels', 'clip_mean', 'clip_std', 'dino_mean', 'dino_std'):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.labels:
            raise ValueError('ModelConfig.labels is empty; give at least one affordance label')
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f'ModelConfig.labels has duplicates: {self.labels}')
        if self.image_size <= 0:
            raise ValueError(f'ModelConfig.image_size must be positive, got {self.image_size}')
        for name in ('clip_mean', 'clip_std', 'dino_mean', 'dino_std'):
            if len(getattr(self, name)) != 3:
                raise ValueError(f'ModelConfig.{name} needs 3 values, got {getattr(self, name)}')

    def to_dict(self) -> Dict[str, Any]:
        """Return plain Python types (safe for ``torch.load(weights_only=True)`` and YAML)."""
        data = dataclasses.asdict(self)
        for name in ('labels', 'clip_mean', 'clip_std', 'dino_mean', 'dino_std'):
            data[name] = list(data[name])
        return data


def build_dataclass_strictly(cls: Type[ConfigT], data: Mapping[str, Any], what: str) -> ConfigT:
    """Build the dataclass ``cls`` from a mapping, rejecting unknown keys.

    The one strict loader of the project (model and training configurations): a typo must
    fail with the known keys listed, never silently fall back to a default.

    Raises:
        ValueError: If a key is not a field of ``cls`` (``what`` names the config in it).
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f'unknown {what} keys {unknown}; known keys: {sorted(known)}')
    return cls(**dict(data))


def read_yaml_mapping(path: str, what: str) -> Dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file gives ``{}``).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the top level is not a mapping.
    """
    config_path = Path(path)
    if not config_path.is_file():
        raise FileNotFoundError(f'{what} not found: {config_path}')
    with config_path.open() as stream:
        data = yaml.safe_load(stream) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{config_path}: expected a mapping of {what} fields, '
                         f'got {type(data).__name__}')
    return data


def config_from_dict(data: Mapping[str, Any]) -> ModelConfig:
    """Build a ModelConfig, rejecting unknown keys (a typo must not silently fall back).

    Raises:
        ValueError: If a key is not a ModelConfig field.
    """
    return build_dataclass_strictly(ModelConfig, data, 'model config')


def load_model_config(path: str) -> ModelConfig:
    """Load a ModelConfig from a YAML file (top-level mapping of ModelConfig fields).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the YAML is not a mapping or has unknown keys.
    """
    data = read_yaml_mapping(path, 'model config')
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as error:
        raise ValueError(f'{path}: {error}') from error
