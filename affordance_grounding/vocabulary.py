"""Affordance label lists, the CLIP prompt builders of SelectiveCL, and action-command parsing.

The list order is the label index used by the classifier and by the released checkpoints, so
it must never be re-sorted.
"""

from dataclasses import dataclass
import functools
from importlib import resources
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import yaml

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
SYNONYMS_RESOURCE = 'data/action_synonyms.yaml'
# The text fallback's smallest accepted margin of the best label over the runner-up (centred
# cosines, inference.text_encoder.LabelTextMatcher). bench/action_phrases.py tuned 0.23 on the
# v2 world's synthetic CLIP (docs/bench/action_phrases_v2world.json) and 0.24 on the v3 world's
# (docs/bench/action_phrases.json); 0.25 leaves headroom for unseen nonsense.
DEFAULT_MIN_TEXT_MARGIN = 0.25

# How a command was understood (ActionCommand.match).
IDLE, EXACT, SYNONYM, TEXT_SIMILARITY = 'idle', 'exact', 'synonym', 'text similarity'


class TextMatch(NamedTuple):
    """What the text fallback found for a phrase: the nearest label and how clearly."""

    label: str
    margin: float  # how far ``label`` is ahead of ``runner_up``
    runner_up: str


# phrase -> TextMatch; e.g. inference.text_encoder.LabelTextMatcher.
TextMatcher = Callable[[str], TextMatch]


@dataclass(frozen=True)
class ActionCommand:
    """What an action command was understood as, and how.

    Attributes:
        text: The command as received, stripped.
        label: The label it maps to; '' when idle.
        index: The label's classifier index; -1 when idle.
        match: ``idle``, ``exact``, ``synonym`` or ``text similarity``.
        score: The margin over the runner-up label for ``text similarity``, else 1.0.
    """

    text: str
    label: str
    index: int
    match: str
    score: float = 1.0

    @property
    def key(self) -> Tuple[str, int]:
        """(label, index): what the inference worker needs."""
        return self.label, self.index

    def describe(self) -> str:
        """Say what ``active_action`` and the log show: the label, and how a phrase mapped to it.

        ``hold`` (exact label), ``grasp -> hold (synonym)``, ``slice it -> cut_with (text
        similarity, margin 0.31)``; '' when idle.
        """
        if self.match in (IDLE, EXACT):
            return self.label
        if self.match == SYNONYM:
            return f'{self.text} -> {self.label} (synonym)'
        return f'{self.text} -> {self.label} (text similarity, margin {self.score:.2f})'


def normalise_phrase(text: str) -> str:
    """Lower case, with runs of spaces, dashes and underscores as one underscore."""
    return '_'.join(text.strip().lower().replace('-', ' ').replace('_', ' ').split())


@functools.lru_cache(maxsize=1)
def load_synonyms() -> Dict[str, str]:
    """Return {normalised phrase: label} from the packaged table (data, not code).

    Raises:
        ValueError: If a phrase appears twice or is itself a label (the table would be
            ambiguous).
    """
    text = resources.files('affordance_grounding').joinpath(SYNONYMS_RESOURCE).read_text()
    by_label = yaml.safe_load(text)
    labels = {label for label_set in LABEL_SETS.values() for label in label_set}
    synonyms: Dict[str, str] = {}
    for label, phrases in by_label.items():
        for phrase in phrases:
            key = normalise_phrase(str(phrase))
            if key in synonyms or key in labels:
                raise ValueError(f'{SYNONYMS_RESOURCE}: {phrase!r} under {label!r} is already '
                                 f'{"a label" if key in labels else "under " + synonyms[key]}')
            synonyms[key] = label
    return synonyms


def parse_action_command(text: str, labels: Tuple[str, ...],
                         text_matcher: Optional[TextMatcher] = None,
                         min_margin: float = DEFAULT_MIN_TEXT_MARGIN) -> ActionCommand:
    """Understand an operator's or planner's action command; empty text = idle.

    The one action policy of the project: the action topic, ``default_action``, the bag tool
    and ``affordance_predict`` all parse through here. In order: the label itself (case,
    surrounding whitespace, spaces or dashes for underscores do not matter: ``"Cut with"`` ->
    ``cut_with``), a phrase of the synonym table (``grab`` -> ``hold``), then, when a
    ``text_matcher`` is given (the CLIP text tower), the nearest label if it is ahead of the
    runner-up by at least ``min_margin``.

    Args:
        text: The command, e.g. the ``data`` of a ``std_msgs/String``.
        labels: The model's label list.
        text_matcher: Optional phrase -> TextMatch; called at most once here.
        min_margin: Smallest accepted margin of the text fallback.

    Returns:
        The understood command (label, index, how, score).

    Raises:
        ValueError: If the command is too long or maps to no label of this model (the
            message lists the known labels, and says what the phrase came closest to).
    """
    if len(text) > MAX_ACTION_CHARS:
        raise ValueError(f'action command of {len(text)} characters is longer than the limit '
                         f'of {MAX_ACTION_CHARS}; send one of the {len(labels)} labels this '
                         f'model knows: {", ".join(labels)}')
    phrase = text.strip()
    key = normalise_phrase(phrase)
    if not key:
        return ActionCommand(phrase, '', -1, IDLE)
    if key in labels:
        return ActionCommand(phrase, key, labels.index(key), EXACT)
    notes = []
    synonym = load_synonyms().get(key)
    if synonym in labels:
        return ActionCommand(phrase, synonym, labels.index(synonym), SYNONYM)
    if synonym is not None:
        notes.append(f'{phrase!r} means {synonym!r}, which this model does not know')
    if text_matcher is not None:
        match = text_matcher(key.replace('_', ' '))
        if match.margin >= min_margin and match.label in labels:
            return ActionCommand(phrase, match.label, labels.index(match.label), TEXT_SIMILARITY,
                                 match.margin)
        notes.append(f'nearest by text similarity: {match.label!r}, only {match.margin:.2f} '
                     f'ahead of {match.runner_up!r} (needs {min_margin})')
    note = f' ({"; ".join(notes)})' if notes else ''
    raise ValueError(f'unknown action {phrase!r}{note}; this model knows {len(labels)} labels: '
                     f'{", ".join(labels)}')
