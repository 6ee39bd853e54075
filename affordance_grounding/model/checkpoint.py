"""Our checkpoint bundle format and the importer for released SelectiveCL state dicts.

A bundle is a ``torch.save``-d dict of tensors and plain Python values only, so it always
loads with ``torch.load(weights_only=True)``::

    format            'affordance_grounding.bundle/1'
    config            ModelConfig.to_dict()
    labels            list of label names (classifier order)
    head              AffordanceHead state dict
    item_text         (C, E) item-prompt embeddings
    person_text       (C, E) person-prompt embeddings or None (training only)
    backbones         {'clip': image-tower state, 'dino': ViT state} or {} (named weights)
    training_state    extra training-only weights (exo stack, projections) or {}
    metadata          free-form provenance (plain types)
"""

import dataclasses
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from affordance_grounding.config import config_from_dict, ModelConfig
from affordance_grounding.fileio import atomic_write
from affordance_grounding.model.backbones import load_clip_model
from affordance_grounding.model.factory import build_grounder, build_prompt_tables
from affordance_grounding.model.grounding import AffordanceGrounder
from affordance_grounding.vocabulary import describe_label_mismatch
import torch

BUNDLE_FORMAT = 'affordance_grounding.bundle/1'
REQUIRED_KEYS = ('format', 'config', 'labels', 'head', 'item_text')
WEIGHT_KEYS = ('clip_weights', 'dino_weights')  # config entries that may name a local file

# Key prefixes of the released SelectiveCL ``Net`` state dicts (docs/method.md, "Model").
OFFICIAL_HEAD_PREFIXES = ('aff_proj.', 'aff_ego_proj.', 'aff_classifier.')
OFFICIAL_TRAINING_PREFIXES = ('aff_exo_proj.', 'K_contrast_projection.',
                              'pixel_contrast_projection.')
OFFICIAL_CLIP_PREFIX = 'net.'
OFFICIAL_DINO_PREFIX = 'vit_model.'


class CheckpointError(RuntimeError):
    """Raised for a missing, corrupt or incompatible checkpoint file."""


def save_bundle(path: str, grounder: AffordanceGrounder, *,
                person_text: Optional[torch.Tensor] = None,
                include_backbones: Optional[bool] = None,
                training_state: Optional[Dict[str, torch.Tensor]] = None,
                metadata: Optional[Dict[str, Any]] = None) -> Path:
    """Write a bundle atomically (temporary file + rename, so a crash never leaves half a file).

    Args:
        path: Destination file.
        grounder: The network to save.
        person_text: Optional (C, E) person-prompt table (needed to resume training).
        include_backbones: Embed the backbone weights. None (default) embeds them exactly when
            the config cannot reload them by name (``clip_weights``/``dino_weights`` null,
            i.e. random backbones); False then raises, since the loaded model would differ.
        training_state: Extra training-only weights to keep with the model.
        metadata: Plain-typed provenance (epoch, metrics, command line ...).

    Returns:
        The written path.
    """
    config = grounder.config
    unnamed = config.clip_weights is None or config.dino_weights is None
    if include_backbones is None:
        include_backbones = unnamed
    elif unnamed and not include_backbones:
        raise ValueError('the backbones were randomly initialised (weights null in the config) '
                         'and cannot be rebuilt by name: save with include_backbones=True')
    backbones = {}
    if include_backbones:
        backbones = {'clip': _cpu_state(grounder.clip.visual),
                     'dino': _cpu_state(grounder.dino.vit)}
    bundle = {
        'format': BUNDLE_FORMAT,
        'config': record_weight_paths(grounder.config.to_dict()),
        'labels': list(grounder.labels),
        'head': _cpu_state(grounder.head),
        'item_text': grounder.item_text.detach().cpu().clone(),
        'person_text': None if person_text is None else person_text.detach().cpu().clone(),
        'backbones': backbones,
        'training_state': dict(training_state or {}),
        'metadata': dict(metadata or {}),
    }
    return write_atomically(bundle, Path(path))


def record_weight_paths(config: Dict[str, Any]) -> Dict[str, Any]:
    """Make relative backbone weight paths absolute, resolved where the bundle is written.

    A model config names its weight files relative to the directory it is used from (the
    checkout), so a bundle that kept ``weights/synthetic/clip_synthetic.bin`` would only load
    from there. Resolving at save time records the file the model was built from and lets the
    bundle load from any directory of this machine. Embedding the backbones instead
    (``include_backbones``) would add the full image towers to every ``best.pt`` and still
    leave the CLIP text tower (``training.export --text-tower``) needing the file.
    Pretrained tags (``openai``), absolute paths and null are kept as they are.
    """
    recorded = dict(config)
    for key in WEIGHT_KEYS:
        value = recorded.get(key)
        if value and not Path(value).is_absolute() and Path(value).is_file():
            recorded[key] = str(Path(value).resolve())
    return recorded


def write_atomically(payload: Any, destination: Path) -> Path:
    """``torch.save`` through :func:`affordance_grounding.fileio.atomic_write` (umask mode)."""
    return atomic_write(destination, lambda temporary: torch.save(payload, temporary))


def first_sentence(message: str, limit: int = 200) -> str:
    """Return the first sentence of a library's (often many-line) error message."""
    lines = message.strip().splitlines() or ['']
    return lines[0].split('. ')[0][:limit]


def load_checkpoint_file(path: str) -> Dict[str, Any]:
    """Load any checkpoint file safely, turning library errors into one clear error.

    Raises:
        CheckpointError: If the file is missing, truncated, corrupt or not a dict.
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise CheckpointError(f'checkpoint not found: {file_path}')
    try:
        payload = torch.load(file_path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises many types for truncated/corrupt files
        raise CheckpointError(
            f'cannot read checkpoint {file_path} ({type(error).__name__}: '
            f'{first_sentence(str(error))}); the file '
            f'is truncated, corrupt or not a PyTorch checkpoint: re-download or re-export it'
        ) from error
    if not isinstance(payload, dict):
        raise CheckpointError(f'{file_path}: expected a dict, got {type(payload).__name__}')
    return payload


def load_bundle(path: str) -> Dict[str, Any]:
    """Load and validate a bundle.

    Raises:
        CheckpointError: If the file is not a readable bundle of this format.
    """
    bundle = load_checkpoint_file(path)
    if bundle.get('format') != BUNDLE_FORMAT:
        hint = ''
        if any(key.startswith(OFFICIAL_HEAD_PREFIXES) for key in bundle):
            hint = (' It looks like a released SelectiveCL state dict: convert it with '
                    '`python -m affordance_grounding.import_official`.')
        raise CheckpointError(f'{path}: not an affordance_grounding bundle (format '
                              f'{bundle.get("format")!r}, expected {BUNDLE_FORMAT!r}).{hint}')
    missing = [key for key in REQUIRED_KEYS if key not in bundle]
    if missing:
        raise CheckpointError(f'{path}: bundle lacks keys {missing}')
    return bundle


def grounder_from_bundle(bundle: Mapping[str, Any],
                         expected_labels: Optional[tuple] = None) -> AffordanceGrounder:
    """Rebuild the network stored in a loaded bundle.

    Args:
        bundle: Output of :func:`load_bundle`.
        expected_labels: If given, the bundle's label list must equal it.

    Raises:
        CheckpointError: If the label lists differ or the weights do not fit the config.
    """
    config = config_from_dict(bundle['config'])
    labels = tuple(bundle['labels'])
    if labels != config.labels:
        raise CheckpointError('bundle labels differ from its config labels')
    problem = describe_label_mismatch(labels, expected_labels, 'checkpoint')
    if problem:
        raise CheckpointError(problem)
    try:
        return build_grounder(config, head_state=bundle['head'], item_text=bundle['item_text'],
                              backbone_states=bundle.get('backbones') or None)
    except RuntimeError as error:
        if 'state_dict' not in str(error):
            raise
        raise CheckpointError(f'bundle weights do not fit its config: {error}') from error


def load_grounder(path: str, device: str = 'cpu',
                  expected_labels: Optional[tuple] = None) -> AffordanceGrounder:
    """Load a bundle file into an eval-mode grounder on ``device``."""
    return grounder_from_bundle(load_bundle(path), expected_labels).to(device).eval()


def split_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Dict]:
    """Split a released SelectiveCL ``Net`` state dict into our parts.

    The head keys keep their names (our modules use the reference names); the DINO descriptor
    order d*6+h is also ours, so no channel permutation is needed.

    Returns:
        ``{'head', 'training', 'clip_full', 'dino'}`` state dicts (CLIP with image and text
        towers, open_clip names; DINO with timm names).

    Raises:
        CheckpointError: If head keys are missing.
    """
    cleaned = {_strip_prefix(key, 'module.'): value for key, value in state_dict.items()}
    parts: Dict[str, Dict[str, torch.Tensor]] = {
        'head': {}, 'training': {}, 'clip_full': {}, 'dino': {}}
    for key, value in cleaned.items():
        if key.startswith(OFFICIAL_HEAD_PREFIXES):
            parts['head'][key] = value
        elif key.startswith(OFFICIAL_TRAINING_PREFIXES):
            parts['training'][key] = value
        elif key.startswith(OFFICIAL_CLIP_PREFIX):
            parts['clip_full'][key[len(OFFICIAL_CLIP_PREFIX):]] = value
        elif key.startswith(OFFICIAL_DINO_PREFIX):
            parts['dino'][key[len(OFFICIAL_DINO_PREFIX):]] = value
    if 'aff_classifier.weight' not in parts['head']:
        raise CheckpointError(
            'not a SelectiveCL state dict: no aff_classifier.weight (expected keys '
            f'{", ".join(p + "*" for p in OFFICIAL_HEAD_PREFIXES)})')
    return parts


def _strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def _cpu_state(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}


def check_class_count(head_state: Mapping[str, torch.Tensor], config: ModelConfig) -> None:
    """Raise a clear error when a classifier does not match the configured label list."""
    classes = head_state['aff_classifier.weight'].shape[0]
    if classes != len(config.labels):
        raise CheckpointError(
            f'checkpoint classifier has {classes} classes but the label list has '
            f'{len(config.labels)}; pick the matching label set (seen = 36, unseen = 25, '
            f'hico_iif = 10)')


def import_official_state_dict(state_dict: Mapping[str, torch.Tensor], config: ModelConfig,
                               embed_backbones: bool = True):
    """Turn a released SelectiveCL state dict into a grounder and its person-prompt table.

    The released files hold the frozen CLIP (image and text towers) and DINO weights next to
    the head. When present they are used: the prompt tables are encoded with the stored text
    tower, and with ``embed_backbones`` the image towers are embedded in the bundle so it
    runs offline. Otherwise the backbones come from ``config``'s named weights.

    Args:
        state_dict: The loaded ``.pth`` dict.
        config: Target configuration (architectures and the label list of the checkpoint).
        embed_backbones: Keep the checkpoint's backbone weights in the bundle.

    Returns:
        ``(grounder, person_text, training_state)``.

    Raises:
        CheckpointError: If the dict is not a SelectiveCL state dict or its class count does
            not match ``config.labels``.
    """
    parts = split_official_state_dict(state_dict)
    check_class_count(parts['head'], config)
    has_clip = bool(parts['clip_full'])
    clip_model = load_clip_model(dataclasses.replace(config, clip_weights=None)
                                 if has_clip else config, 'the official checkpoint')
    if has_clip:
        clip_model.load_state_dict(parts['clip_full'], strict=True)
    tables = build_prompt_tables(clip_model, config)
    backbones = {}
    if embed_backbones and has_clip:
        backbones['clip'] = _cpu_state(clip_model.visual)
    if embed_backbones and parts['dino']:
        backbones['dino'] = parts['dino']
    grounder = build_grounder(config, head_state=parts['head'], item_text=tables['item'],
                              backbone_states=backbones or None,
                              weights_source='the official checkpoint')
    return grounder, tables['person'], parts['training']
