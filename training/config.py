"""Training configuration: one frozen dataclass, a YAML file and ``key=value`` overrides."""

import dataclasses
from dataclasses import dataclass
import typing
from typing import Any, Dict, Optional, Sequence

from affordance_grounding.config import build_dataclass_strictly, read_yaml_mapping
import yaml

SELECTIONS = ('val', 'test')


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (defaults = the paper's SelectiveCL recipe).

    Attributes:
        data_root: Dataset root (AGD20K layout).
        split: ``Seen``/``Unseen`` for AGD20K, None for HICO-IIF (no split level).
        model_config: Model YAML (architectures, weights, labels).
        num_exo: Exocentric images per sample (E).
        batch_size: Egocentric images per step (B).
        epochs: Training epochs.
        lr: Base learning rate (SGD, Nesterov momentum).
        momentum: SGD momentum.
        weight_decay: Weight decay on every parameter group (reference behaviour).
        gamma_exo: Exo region threshold for k-means input selection (gamma 1).
        gamma_ego: Ego CLIP-foreground threshold (gamma 2).
        pscore_threshold: Part-IoU acceptance threshold (alpha).
        temperature: Contrastive temperature (tau).
        base_temperature: Base temperature; tau / base_temperature scales both losses.
        num_clusters: k-means clusters for part discovery.
        kmeans_iters: Fixed Lloyd iterations (no tolerance check, so no host sync).
        legacy_row_indexing: Reproduce the released code's exo row-indexing bug.
        bn_momentum: BatchNorm momentum (0.19 equals the reference's double update).
        use_proto_loss: Ablation switch for the prototype contrastive loss.
        part_prototypes: False = object-level prototypes only (ablation).
        use_pixel_loss: Ablation switch for the pixel contrastive loss.
        selection: ``val`` selects on a held-out part of the test split and reports on the
            rest; ``test`` selects on the whole test split (the paper's protocol).
        val_fraction: Share of test images (per affordance) held out for selection.
        calibration: Map used for model selection (``clip`` = map 2, the paper's choice).
        seed: Seed for Python, NumPy, torch and the data order.
        workers: DataLoader worker processes.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        amp: Mixed precision on CUDA.
        out_dir: Folder for checkpoints, the JSON-lines log and evaluation output.
        checkpoint_every_steps: Also write ``last.pt`` every this many steps (0 = off).
        checkpoint_every_minutes: Also write ``last.pt`` when this many minutes passed since
            the last one (0 = off); with the steps setting, bounds what a SIGKILL loses.
        max_steps_per_epoch: Cap on steps per epoch (0 = whole epoch); for smoke runs.
        eval_limit: Cap on evaluated test images (0 = all).
    """

    data_root: str = 'data/AGD20K'
    split: Optional[str] = 'Seen'
    model_config: str = 'config/model_selectivecl.yaml'
    num_exo: int = 3
    batch_size: int = 8
    epochs: int = 15
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma_exo: float = 0.6
    gamma_ego: float = 0.6
    pscore_threshold: float = 0.6
    temperature: float = 0.5
    base_temperature: float = 0.07
    num_clusters: int = 3
    kmeans_iters: int = 100
    legacy_row_indexing: bool = False
    bn_momentum: float = 0.1
    use_proto_loss: bool = True
    part_prototypes: bool = True
    use_pixel_loss: bool = True
    selection: str = 'val'
    val_fraction: float = 0.2
    calibration: str = 'clip'
    seed: int = 0
    workers: int = 2
    device: str = 'auto'
    amp: bool = True
    out_dir: str = 'outputs/train'
    checkpoint_every_steps: int = 0
    checkpoint_every_minutes: float = 10.0
    max_steps_per_epoch: int = 0
    eval_limit: int = 0

    def __post_init__(self):
        """Reject values that cannot work, with the offending value in the message."""
        if self.selection not in SELECTIONS:
            raise ValueError(f'selection must be one of {SELECTIONS}, got {self.selection!r}')
        if self.batch_size < 1 or self.num_exo < 1 or self.epochs < 1:
            raise ValueError('batch_size, num_exo and epochs must be >= 1, got '
                             f'{self.batch_size}, {self.num_exo}, {self.epochs}')
        if self.checkpoint_every_steps < 0 or self.checkpoint_every_minutes < 0:
            raise ValueError('checkpoint_every_steps and checkpoint_every_minutes must be >= 0 '
                             f'(0 = off), got {self.checkpoint_every_steps}, '
                             f'{self.checkpoint_every_minutes}')
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f'val_fraction must be in [0, 1), got {self.val_fraction}')


def parse_overrides(pairs: Sequence[str]) -> Dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``2``, ``true``, ``null``)."""
    overrides = {}
    for pair in pairs:
        if '=' not in pair:
            raise ValueError(f'override {pair!r} is not key=value')
        key, value = pair.split('=', 1)
        overrides[key.strip()] = yaml.safe_load(value) if value else ''
    return overrides


def build_train_config(path: Optional[str] = None,
                       overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a YAML file (optional) and apply ``key=value`` overrides; unknown keys are errors."""
    data = read_yaml_mapping(path, 'training config') if path else {}
    data.update(parse_overrides(overrides))
    hints = typing.get_type_hints(TrainConfig)
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    checked = {key: check_field_type(key, value, hints[key], defaults[key])
               if key in hints else value for key, value in data.items()}
    return build_dataclass_strictly(TrainConfig, checked, 'training config')


TYPE_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string'}


def check_field_type(name: str, value: Any, annotation: Any, example: Any) -> Any:
    """Return ``value`` as the field's type, or raise ValueError naming field and type.

    YAML reads ``epochs=two`` as the string ``'two'``; without this check it would fail
    much later with an unrelated comparison error. Integers are accepted for float fields,
    numbers for string fields.

    Raises:
        ValueError: ``epochs='two' is not valid: expected an integer (e.g. epochs=15)``.
    """
    allowed = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union \
        else (annotation,)
    if value is None and type(None) in allowed:
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    for kind in allowed:
        if kind is float and number:
            return float(value)
        if kind is str and number:  # a folder named 2024 reads as an integer in YAML
            return str(value)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
    expected = ' or '.join(TYPE_NAMES.get(kind, 'null') if kind is not type(None) else 'null'
                           for kind in allowed)
    example = {True: 'true', False: 'false', None: 'null'}.get(example, example) \
        if example is None or isinstance(example, bool) else example
    raise ValueError(f'{name}={value!r} is not valid: expected {expected} '
                     f'(e.g. {name}={example})')
