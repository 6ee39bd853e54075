"""The optional CLIP text tower: map an arbitrary action phrase to the nearest label.

``training.export --text-tower`` writes ``<model>.text.onnx`` next to the model (tokens ->
unit-length text embedding; off by default: the ViT-B/16 text tower is about 250 MB, which a
Jetson may need for other things). When that file exists, the node maps phrases that are
neither a label nor a synonym to the label whose text embedding is nearest in cosine. Labels
are encoded once at load and each new phrase once (cached), never per frame. The encoder runs
on the CPU with ONNX Runtime: one phrase costs milliseconds and happens per command.
"""

from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

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


class LabelTextMatcher:
    """Phrase -> (nearest label, cosine), encoding each distinct phrase once (LRU cache)."""

    def __init__(self, encoder: OnnxTextEncoder, labels: Sequence[str]):
        """Encode every label once."""
        self.encoder = encoder
        self.labels = tuple(labels)
        self._label_embeddings = encoder.encode([label_to_text(x) for x in self.labels])
        self._cache: 'OrderedDict[str, Tuple[str, float]]' = OrderedDict()
        self.encoded_phrases = 0

    def __call__(self, phrase: str) -> Tuple[str, float]:
        """Return the label nearest to ``phrase`` and their cosine similarity."""
        if phrase in self._cache:
            self._cache.move_to_end(phrase)
            return self._cache[phrase]
        embedding = self.encoder.encode([phrase])[0]  # (E,)
        self.encoded_phrases += 1
        cosines = self._label_embeddings @ embedding  # (C,) both unit length
        best = int(np.argmax(cosines))
        result = (self.labels[best], float(cosines[best]))
        self._cache[phrase] = result
        if len(self._cache) > PHRASE_CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    def similarities(self, phrase: str) -> Dict[str, float]:
        """Cosine of ``phrase`` with every label (for inspection; not cached)."""
        embedding = self.encoder.encode([phrase])[0]
        return dict(zip(self.labels, (float(c) for c in self._label_embeddings @ embedding)))


def load_label_matcher(model_path: str, labels: Sequence[str]) -> Optional[LabelTextMatcher]:
    """Return a matcher when ``<model>.text.onnx`` exists next to the model, else None."""
    path = text_model_path(model_path)
    if not path.is_file():
        return None
    return LabelTextMatcher(OnnxTextEncoder(str(path)), labels)
