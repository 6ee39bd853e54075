"""Affordance label lists and the CLIP prompt builders of SelectiveCL.

The list order is the label index used by the classifier and by the released checkpoints, so
it must never be re-sorted.
"""

from typing import Dict, Optional, Sequence, Tuple

AGD20K_SEEN: Tuple[str, ...] = (
    'beat', 'boxing', 'brush_with', 'carry', 'catch', 'cut', 'cut_with', 'drag', 'drink_with',
    'eat', 'hit', 'hold', 'jump', 'kick', 'lie_on', 'lift', 'look_out', 'open', 'pack', 'peel',
    'pick_up', 'pour', 'push', 'ride', 'sip', 'sit_on', 'stick', 'stir', 'swing', 'take_photo',
    'talk_on', 'text_on', 'throw', 'type_on', 'wash', 'write',
)

AGD20K_UNSEEN: Tuple[str, ...] = (
    'carry', 'catch', 'cut', 'cut_with', 'drink_with', 'eat', 'hit', 'hold', 'jump', 'kick',
    'lie_on', 'open', 'peel', 'pick_up', 'pour', 'push', 'ride', 'sip', 'sit_on', 'stick',
    'swing', 'take_photo', 'throw', 'type_on', 'wash',
)

HICO_IIF: Tuple[str, ...] = (
    'cut_with', 'drink_with', 'hold', 'open', 'pour', 'sip', 'stick', 'stir', 'swing', 'type_on',
)

LABEL_SETS: Dict[str, Tuple[str, ...]] = {
    'seen': AGD20K_SEEN,
    'unseen': AGD20K_UNSEEN,
    'hico_iif': HICO_IIF,
}


def describe_label_mismatch(model_labels: Sequence[str], expected_labels: Optional[Sequence[str]],
                            source: str) -> Optional[str]:
    """Say how a model's label list differs from the one a caller needs, or None if it does not.

    The one label check of the project: checkpoint bundles and exported graphs both use it
    (each raises its own error type with this text).

    Args:
        model_labels: The labels the model was trained for, in classifier order.
        expected_labels: The labels the caller needs, or None to accept any.
        source: What holds the model (a file name), for the message.
    """
    model = tuple(model_labels)
    if expected_labels is None or tuple(expected_labels) == model:
        return None
    expected = tuple(expected_labels)
    missing = [label for label in expected if label not in model]
    difference = (f'not in the model: {", ".join(missing[:5])}' if missing
                  else 'same labels, different order')
    return (f'{source} was made for {len(model)} labels ({", ".join(model[:5])}, ...) but '
            f'{len(expected)} labels were requested ({difference}); use a model made for that '
            "label set, or drop the labels setting to use the model's own")


def get_label_set(name: str) -> Tuple[str, ...]:
    """Return a named label list (``seen``, ``unseen`` or ``hico_iif``).

    Args:
        name: Label-set name, case-insensitive.

    Returns:
        The labels in classifier order.

    Raises:
        ValueError: If the name is unknown.
    """
    key = name.lower()
    if key not in LABEL_SETS:
        raise ValueError(
            f'unknown label set {name!r}; expected one of {sorted(LABEL_SETS)}')
    return LABEL_SETS[key]


def build_item_prompt(label: str) -> str:
    """Build the egocentric ("item") prompt, e.g. ``an item to hold with``.

    Underscores are kept (``sit_on`` stays ``sit_on``) and `` with`` is appended unless the
    substring ``with`` already occurs in the label, exactly as the reference prompts.

    Args:
        label: Raw affordance label.

    Returns:
        The prompt text.
    """
    suffix = '' if 'with' in label else ' with'
    return f'an item to {label}{suffix}'


def build_person_prompt(label: str) -> str:
    """Build the exocentric ("person") prompt, e.g. ``a person hold an item``.

    Args:
        label: Raw affordance label (underscores kept).

    Returns:
        The prompt text.
    """
    return f'a person {label} an item'


def resolve_label_index(labels: Tuple[str, ...], action: str) -> int:
    """Return the classifier index of an action, with an error listing the known labels.

    Args:
        labels: The model's label list.
        action: Requested affordance label.

    Returns:
        Index of ``action`` in ``labels``.

    Raises:
        ValueError: If the action is not in the label list.
    """
    try:
        return labels.index(action)
    except ValueError:
        raise ValueError(
            f'unknown action {action!r}; this model knows {len(labels)} labels: '
            f'{", ".join(labels)}') from None


MAX_ACTION_CHARS = 64


def parse_action_command(text: str, labels: Tuple[str, ...]) -> Tuple[str, int]:
    """Turn an operator's action command into (label, class index); empty text = idle.

    Surrounding whitespace is ignored, case too, and spaces or dashes may stand for the
    underscores of the labels (``"Cut with"`` -> ``cut_with``).

    Args:
        text: The command, e.g. the ``data`` of a ``std_msgs/String``.
        labels: The model's label list.

    Returns:
        ``(label, index)``; ``('', -1)`` for an empty command (idle).

    Raises:
        ValueError: If the command is too long or names no known label (the message lists
            the known labels).
    """
    if len(text) > MAX_ACTION_CHARS:
        raise ValueError(f'action command of {len(text)} characters is longer than the limit '
                         f'of {MAX_ACTION_CHARS}; send one label such as {labels[0]!r}')
    label = '_'.join(text.strip().lower().replace('-', ' ').split())
    if not label:
        return '', -1
    return label, resolve_label_index(labels, label)
