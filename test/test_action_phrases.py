"""Action phrases: the synonym table covers every label set; the CLIP text fallback."""

from pathlib import Path

from affordance_grounding.inference.text_encoder import (
    LabelTextMatcher, load_label_matcher, OnnxTextEncoder, text_model_path)
from affordance_grounding.vocabulary import (
    AGD20K_SEEN, AGD20K_UNSEEN, DEFAULT_MIN_TEXT_MARGIN, EXACT, HICO_IIF, IDLE, LABEL_SETS,
    load_synonyms, normalise_phrase, parse_action_command, SYNONYM, SYNONYMS_RESOURCE,
    TEXT_SIMILARITY, TextMatch)
import numpy as np
import pytest
import yaml

REPO_TABLE = Path(__file__).resolve().parents[1] / 'affordance_grounding' / SYNONYMS_RESOURCE


@pytest.mark.parametrize('set_name', sorted(LABEL_SETS))
def test_every_label_of_every_set_has_synonyms_that_map_to_it(set_name):
    labels = LABEL_SETS[set_name]
    by_label = yaml.safe_load(REPO_TABLE.read_text())
    for label in labels:
        phrases = by_label.get(label)
        assert phrases, f'{label} ({set_name}) has no synonym'
        for phrase in phrases:
            command = parse_action_command(phrase, labels)
            assert (command.label, command.index, command.match) == (
                label, labels.index(label), SYNONYM), phrase


def test_table_targets_are_labels_and_phrases_are_unique():
    all_labels = {label for labels in LABEL_SETS.values() for label in labels}
    by_label = yaml.safe_load(REPO_TABLE.read_text())
    assert set(by_label) == all_labels  # nothing else, nothing missing
    keys = [normalise_phrase(p) for phrases in by_label.values() for p in phrases]
    assert len(keys) == len(set(keys))  # one label per phrase: deterministic
    assert not set(keys) & all_labels  # a label always means itself
    assert load_synonyms() == load_synonyms() and len(load_synonyms()) == len(keys)


@pytest.mark.parametrize('text, label', [
    ('grasp', 'hold'), ('Grab', 'hold'), ('take', 'hold'), ('slice', 'cut_with'),
    ('sip from', 'sip'), ('  Sip-From ', 'sip'), ('take a picture', 'take_photo'),
    ('toss', 'throw'), ('pick', 'pick_up')])
def test_common_planner_verbs_map_by_synonym(text, label):
    command = parse_action_command(text, AGD20K_SEEN)
    assert (command.label, command.match, command.score) == (label, SYNONYM, 1.0)
    assert command.describe() == f'{text.strip()} -> {label} (synonym)'


def test_labels_stay_exact_and_idle_stays_idle():
    command = parse_action_command('Pick up', HICO_IIF + ('pick_up',))
    assert (command.label, command.match, command.describe()) == ('pick_up', EXACT, 'pick_up')
    idle = parse_action_command('  ', AGD20K_SEEN)
    assert (idle.key, idle.match, idle.describe()) == (('', -1), IDLE, '')


def test_synonym_of_a_label_the_model_lacks_is_rejected_with_the_reason():
    with pytest.raises(ValueError) as error:
        parse_action_command('scribble', AGD20K_UNSEEN)
    message = str(error.value)
    assert "'scribble' means 'write', which this model does not know" in message
    assert f'{len(AGD20K_UNSEEN)} labels' in message


class CountingMatcher:
    """A stand-in text matcher: fixed answers, counts its calls."""

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def __call__(self, phrase):
        self.calls.append(phrase)
        return self.answer


def test_text_fallback_applies_only_after_labels_and_synonyms_and_honours_the_margin():
    matcher = CountingMatcher(TextMatch('cut_with', 0.31, 'cut'))
    assert parse_action_command('hold', AGD20K_SEEN, matcher).match == EXACT
    assert parse_action_command('grab', AGD20K_SEEN, matcher).match == SYNONYM
    assert matcher.calls == []
    command = parse_action_command('Slice it', AGD20K_SEEN, matcher, min_margin=0.3)
    assert matcher.calls == ['slice it']
    assert (command.label, command.match) == ('cut_with', TEXT_SIMILARITY)
    assert command.describe() == 'Slice it -> cut_with (text similarity, margin 0.31)'
    with pytest.raises(ValueError, match=r"nearest by text similarity: 'cut_with', only 0.31 "
                                         r"ahead of 'cut' \(needs 0.4\)\); this model knows 36"):
        parse_action_command('slice it', AGD20K_SEEN, matcher, min_margin=0.4)


class FixedEncoder:
    """Embeddings from a table: every text shares one dominant direction, as CLIP's do."""

    def __init__(self, table):
        self.table = {text: np.asarray(vector, np.float32) for text, vector in table.items()}

    def encode(self, texts):
        rows = np.stack([self.table[text] for text in texts])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_margin_ignores_the_shared_direction_that_makes_raw_cosines_high():
    encoder = FixedEncoder({'hold': [10, 1, 0, 0], 'pour': [10, 0, 1, 0],
                            'cut with': [10, 0, 0, 1], 'nonsense': [10, 0.3, 0.3, 0.3],
                            'grip': [10, 0.9, 0.1, 0]})  # shared direction: the first axis
    matcher = LabelTextMatcher(encoder, ('hold', 'pour', 'cut_with'))
    raw = encoder.encode(['nonsense', 'hold'])
    assert raw[0] @ raw[1] > 0.99  # a bare cosine threshold would accept it
    nonsense, grip = matcher('nonsense'), matcher('grip')
    assert nonsense.margin == pytest.approx(0.0, abs=1e-6)
    assert grip.label == 'hold' and grip.runner_up == 'pour' and grip.margin > 0.5
    with pytest.raises(ValueError, match='nearest by text similarity'):
        parse_action_command('nonsense', ('hold', 'pour', 'cut_with'), matcher)
    assert parse_action_command('grip', ('hold', 'pour', 'cut_with'), matcher).label == 'hold'
    with pytest.raises(ValueError, match='at least two labels'):
        LabelTextMatcher(encoder, ('hold',))


@pytest.fixture(scope='module')
def synthetic_text_model(tmp_path_factory):
    """Export the synthetic model's CLIP text tower next to a (placeholder) model path."""
    from training.export import export_text_tower

    model = tmp_path_factory.mktemp('text') / 'synthetic.onnx'
    export_text_tower('config/model_synthetic.yaml', str(text_model_path(str(model))))
    return model


def test_text_tower_export_runs_and_maps_each_label_to_itself(synthetic_text_model):
    matcher = load_label_matcher(str(synthetic_text_model), AGD20K_SEEN)
    assert isinstance(matcher, LabelTextMatcher)
    for label in ('hold', 'cut_with', 'pour', 'take_photo'):
        match = matcher(label.replace('_', ' '))
        assert match.label == label and match.margin > 0.0
        assert matcher.similarities(label.replace('_', ' '))[label] == pytest.approx(1.0, abs=1e-5)
    embeddings = matcher.encoder.encode(['grab the mug', 'x'])
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_text_fallback_encodes_each_new_phrase_once(synthetic_text_model):
    matcher = load_label_matcher(str(synthetic_text_model), HICO_IIF)
    scores = matcher.similarities('slice it')
    best, second = sorted(scores, key=scores.get, reverse=True)[:2]
    for _ in range(3):
        command = parse_action_command('slice it', HICO_IIF, matcher, min_margin=-2.0)
        assert (command.label, command.match) == (best, TEXT_SIMILARITY)
        assert command.score == pytest.approx(scores[best] - scores[second], abs=1e-6)
    assert matcher.encoded_phrases == 1
    with pytest.raises(ValueError, match='nearest by text similarity'):
        parse_action_command('slice it', HICO_IIF, matcher, min_margin=2.01)


def test_default_margin_rejects_held_out_nonsense_the_cosine_rule_accepted(synthetic_text_model):
    from bench.action_phrases import run

    report = run(text_model_path(str(synthetic_text_model)), 'synthetic')
    held_out = report['rules'][f'margin >= {DEFAULT_MIN_TEXT_MARGIN:.2f}']
    assert report['held_out_nonsense'] >= 50
    assert held_out['nonsense_rejected'] >= 0.95
    # A robot must not act on a wrong label: the margin rule rejects what this text tower
    # cannot map (it never saw synonyms; see bench.action_phrases) instead of guessing, and
    # maps at most 5% of held-out synonyms wrongly, a tenth of what the cosine rule did.
    wrong_before = report['rules']['cosine >= 0.8']['synonyms']['wrong']
    assert held_out['synonyms']['wrong'] <= min(0.05, wrong_before / 10)
    assert report['rules']['cosine >= 0.8']['nonsense_rejected'] < 0.5  # the old rule did not
    matcher = load_label_matcher(str(synthetic_text_model), AGD20K_SEEN)
    for phrase in ('flyaway', 'grasp the mug', 'pour water'):  # issue 21's examples
        with pytest.raises(ValueError, match='nearest by text similarity'):
            parse_action_command(phrase, AGD20K_SEEN, matcher)


def test_no_text_model_means_no_fallback(tmp_path):
    assert load_label_matcher(str(tmp_path / 'model.onnx'), AGD20K_SEEN) is None
    assert text_model_path('/m/model.engine').name == 'model.text.onnx'


def test_text_model_without_tokenizer_metadata_is_refused(tmp_path):
    import onnx
    from onnx import helper, TensorProto

    graph = helper.make_graph([helper.make_node('Identity', ['tokens'], ['text_embedding'])],
                              'g', [helper.make_tensor_value_info('tokens', TensorProto.INT64,
                                                                  [1, 4])],
                              [helper.make_tensor_value_info('text_embedding', TensorProto.INT64,
                                                             [1, 4])])
    path = tmp_path / 'bare.text.onnx'
    # The IR version that goes with opset 17: ONNX Runtime 1.23 (Python 3.10) reads IR <= 11.
    onnx.save(helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid('', 17)]),
              str(path))
    with pytest.raises(ValueError, match='re-export it with training.export --text-tower'):
        OnnxTextEncoder(str(path))
