"""The optional CLIP text tower: map an arbitrary action phrase to the nearest label.

``training.export --text-tower`` writes ``<model>.text.onnx`` next to the model (tokens ->
unit-length text embedding; off by default: the ViT-B/16 text tower is about 250 MB, which a
Jetson may need for other things). When that file exists, the node maps phrases that are
neither a label nor a synonym to the label whose text embedding is nearest, provided it beats
the runner-up label by a margin (``LabelTextMatcher``). Labels are encoded once at load and
each new phrase once (cached), never per frame. The encoder runs
on the CPU with ONNX Runtime: one phrase costs milliseconds and happens per command.
"""

from collections import OrderedDict
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Sequence

from affordance_grounding.vocabulary import TextMatch
import numpy as np

TEXT_MODEL_SUFFIX = '.text.onnx'
TOKENS_NAME = 'tokens'
EMBEDDING_NAME = 'text_embedding'
# metadata_props keys of the text model: how to tokenise for it.
CLIP_MODEL_KEY = 'clip_model'
CONTEXT_LENGTH_KEY = 'context_length'
PHRASE_CACHE_SIZE = 256


def text_model_path(model_path: str) -> Path:
    """``/m/model.onnx`` (or ``.engine``, ``.pt``) -> ``/m/model.text.onnx``."""
    path = Path(model_path)
    return path.with_name(path.stem + TEXT_MODEL_SUFFIX)


def label_to_text(label: str) -> str:
    """Return what the text tower reads for a label: its words (``cut_with`` -> ``cut with``)."""
    return label.replace('_', ' ')


class OnnxTextEncoder:
    """Phrases -> unit-length CLIP text embeddings, through the exported text tower."""

    def __init__(self, path: str):
        """Open the text model and the tokenizer named in its metadata.

        Raises:
            ValueError: If the file lacks the tokenizer metadata.
        """
        import onnxruntime
        import open_clip

        self.path = Path(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one phrase per command: leave the cores to the model
        self._session = onnxruntime.InferenceSession(str(path), options,
                                                     providers=['CPUExecutionProvider'])
        metadata = self._session.get_modelmeta().custom_metadata_map
        if CLIP_MODEL_KEY not in metadata or CONTEXT_LENGTH_KEY not in metadata:
            raise ValueError(f'{path} has no {CLIP_MODEL_KEY}/{CONTEXT_LENGTH_KEY} metadata; '
                             're-export it with training.export --text-tower')
        self.context_length = int(metadata[CONTEXT_LENGTH_KEY])
        self._tokenizer = open_clip.get_tokenizer(metadata[CLIP_MODEL_KEY],
                                                  context_length=self.context_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return (N, E) float32 unit-length embeddings of ``texts``."""
        tokens = self._tokenizer(list(texts)).numpy().astype(np.int64)  # (N, context)
        return self._session.run([EMBEDDING_NAME], {TOKENS_NAME: tokens})[0]


def center_and_normalise(embeddings: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Subtract the shared direction ``center`` from (N, E) embeddings; rows to unit length."""
    centred = embeddings - center
    return centred / np.maximum(np.linalg.norm(centred, axis=-1, keepdims=True), 1e-12)


class LabelTextMatcher:
    """Phrase -> nearest label and its margin over the runner-up, each phrase encoded once.

    Why a margin and not a cosine threshold: CLIP text embeddings share one dominant direction,
    so any phrase, nonsense included, has a high cosine with every label (0.5-0.95 on the
    synthetic CLIP) and the best raw cosine says little (``flyaway`` reached 0.88 with
    ``wash``). The matcher therefore removes that shared direction (the mean of the label
    embeddings), compares the phrase with every label in what is left, and reports how far the
    best label is ahead of the second: a phrase that is about no label in particular is about
    as close to several of them.
    ``bench/action_phrases.py`` measures the rule and chose the default margin.
    """

    def __init__(self, encoder: OnnxTextEncoder, labels: Sequence[str]):
        """Encode every label once and remove their mean direction.

        Raises:
            ValueError: With fewer than two labels (there is no runner-up to beat).
        """
        self.encoder = encoder
        self.labels = tuple(labels)
        if len(self.labels) < 2:
            raise ValueError(f'the text fallback needs at least two labels, got {self.labels}')
        raw = encoder.encode([label_to_text(x) for x in self.labels])  # (C, E)
        self._center = raw.mean(axis=0)
        self._label_embeddings = center_and_normalise(raw, self._center)
        self._cache: 'OrderedDict[str, TextMatch]' = OrderedDict()
        self.encoded_phrases = 0

    def __call__(self, phrase: str) -> TextMatch:
        """Return the label nearest to ``phrase``, the runner-up, and the margin between them."""
        if phrase in self._cache:
            self._cache.move_to_end(phrase)
            return self._cache[phrase]
        self.encoded_phrases += 1
        scores = self.similarities(phrase)
        ranked = sorted(scores, key=scores.get, reverse=True)
        result = TextMatch(ranked[0], scores[ranked[0]] - scores[ranked[1]], ranked[1])
        self._cache[phrase] = result
        if len(self._cache) > PHRASE_CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    def similarities(self, phrase: str) -> Dict[str, float]:
        """Centred cosine of ``phrase`` with every label (what the margin compares; not cached)."""
        embedding = center_and_normalise(self.encoder.encode([phrase])[0], self._center)
        return dict(zip(self.labels, (float(c) for c in self._label_embeddings @ embedding)))


def load_label_matcher(model_path: str, labels: Sequence[str]) -> Optional[LabelTextMatcher]:
    """Return a matcher when ``<model>.text.onnx`` exists next to the model, else None."""
    path = text_model_path(model_path)
    if not path.is_file():
        return None
    return LabelTextMatcher(OnnxTextEncoder(str(path)), labels)


class TextFallback(NamedTuple):
    """The text fallback of a model file, and the line that says what phrases it understands."""

    matcher: Optional[LabelTextMatcher]
    note: str
    failed: bool  # a text model exists but cannot be used (the note says why)


def open_text_fallback(model_path: str, labels: Sequence[str]) -> TextFallback:
    """Load ``<model>.text.onnx`` if there is one, as the node, predict and the bag tool do.

    The fallback is optional, so a text model that cannot be loaded is reported in the note
    and the caller goes on with labels and synonyms.
    """
    path = text_model_path(model_path)
    try:
        matcher = load_label_matcher(model_path, labels)
    except Exception as error:  # noqa: B902 - optional feature: report, run without it
        return TextFallback(None, f'action phrases: cannot load {path} ({error}); only labels '
                            'and synonyms are understood', True)
    if matcher is None:
        return TextFallback(None, f'action phrases: labels, synonyms (no {path.name}: no '
                            'text-similarity fallback)', False)
    return TextFallback(matcher, f'action phrases: labels, synonyms and CLIP text similarity '
                        f'({path})', False)
