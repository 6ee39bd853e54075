"""Label lists and prompt builders against docs/method.md ("Data", "Model")."""

from affordance_grounding.vocabulary import (
    AGD20K_SEEN, AGD20K_UNSEEN, build_item_prompt, build_person_prompt,
    describe_label_mismatch, get_label_set, HICO_IIF, parse_action_command, resolve_label_index)
import pytest


def test_label_sets_have_reference_lengths():
    assert (len(AGD20K_SEEN), len(AGD20K_UNSEEN), len(HICO_IIF)) == (36, 25, 10)
    for labels in (AGD20K_SEEN, AGD20K_UNSEEN, HICO_IIF):
        assert len(set(labels)) == len(labels)


def test_seen_labels_follow_reference_order():
    assert AGD20K_SEEN[0] == 'beat'
    assert AGD20K_SEEN[-1] == 'write'
    assert AGD20K_SEEN[2] == 'brush_with'
    assert AGD20K_SEEN[11] == 'hold'
    assert AGD20K_SEEN[18] == 'pack'
    assert AGD20K_SEEN[25] == 'sit_on'
    assert AGD20K_SEEN[29] == 'take_photo'


def test_unseen_labels_follow_reference_order():
    assert AGD20K_UNSEEN[0] == 'carry'
    assert AGD20K_UNSEEN[-1] == 'wash'
    assert AGD20K_UNSEEN[3] == 'cut_with'
    assert AGD20K_UNSEEN[7] == 'hold'
    assert AGD20K_UNSEEN[18] == 'sit_on'


def test_unseen_labels_are_seen_labels_in_seen_order():
    positions = [AGD20K_SEEN.index(label) for label in AGD20K_UNSEEN]
    assert positions == sorted(positions)


def test_hico_labels_follow_reference_order():
    assert HICO_IIF == ('cut_with', 'drink_with', 'hold', 'open', 'pour', 'sip', 'stick',
                        'stir', 'swing', 'type_on')


def test_get_label_set_resolves_names_case_insensitively():
    assert get_label_set('seen') is AGD20K_SEEN
    assert get_label_set('Unseen') is AGD20K_UNSEEN
    assert get_label_set('HICO_IIF') is HICO_IIF


def test_get_label_set_rejects_unknown_name():
    with pytest.raises(ValueError, match='hico_iif'):
        get_label_set('seen36')


@pytest.mark.parametrize('label, prompt', [
    ('hold', 'an item to hold with'),
    ('sit_on', 'an item to sit_on with'),
    ('take_photo', 'an item to take_photo with'),
    ('cut_with', 'an item to cut_with'),
    ('brush_with', 'an item to brush_with'),
    ('drink_with', 'an item to drink_with'),
])
def test_build_item_prompt_appends_with_only_when_absent(label, prompt):
    assert build_item_prompt(label) == prompt


@pytest.mark.parametrize('label, prompt', [
    ('hold', 'a person hold an item'),
    ('sit_on', 'a person sit_on an item'),
    ('cut_with', 'a person cut_with an item'),
])
def test_build_person_prompt_keeps_underscores(label, prompt):
    assert build_person_prompt(label) == prompt


def test_resolve_label_index_returns_classifier_index():
    assert resolve_label_index(AGD20K_SEEN, 'hold') == 11
    assert resolve_label_index(AGD20K_UNSEEN, 'hold') == 7
    assert resolve_label_index(HICO_IIF, 'type_on') == 9


def test_resolve_label_index_unknown_action_lists_labels():
    with pytest.raises(ValueError) as info:
        resolve_label_index(HICO_IIF, 'fly')
    message = str(info.value)
    assert "'fly'" in message
    assert '10 labels' in message
    for label in HICO_IIF:
        assert label in message


@pytest.mark.parametrize('text, expected', [
    ('hold', ('hold', AGD20K_SEEN.index('hold'))),
    ('  Cut With ', ('cut_with', AGD20K_SEEN.index('cut_with'))),
    ('drink-with', ('drink_with', AGD20K_SEEN.index('drink_with'))),
    ('', ('', -1)),
    ('   ', ('', -1)),
])
def test_parse_action_command_normalises_and_resolves(text, expected):
    assert parse_action_command(text, AGD20K_SEEN).key == expected


@pytest.mark.parametrize('text, fragment', [
    ('fly', "unknown action 'fly'"),
    ('x' * 65, 'longer than the limit of 64'),
    ('hold hold', "unknown action 'hold hold'"),
])
def test_parse_action_command_rejects_unknown_and_overlong(text, fragment):
    with pytest.raises(ValueError, match=fragment) as error:
        parse_action_command(text, AGD20K_SEEN)
    # Every rejection lists every label (the docs promise it), the over-long one included.
    assert all(label in str(error.value) for label in AGD20K_SEEN)


def test_describe_label_mismatch_says_what_differs_or_nothing():
    """The one label check shared by bundles and exported graphs."""
    assert describe_label_mismatch(HICO_IIF, None, 'm.onnx') is None
    assert describe_label_mismatch(HICO_IIF, list(HICO_IIF), 'm.onnx') is None
    missing = describe_label_mismatch(HICO_IIF, ('hold', 'kick'), 'm.onnx')
    assert missing.startswith('m.onnx was made for 10 labels')
    assert 'not in the model: kick' in missing
    reordered = describe_label_mismatch(('hold', 'pour'), ('pour', 'hold'), 'checkpoint')
    assert 'same labels, different order' in reordered
