"""Export the CLIP text tower to ``<model stem>.text.onnx``, checked against PyTorch.

The node maps action phrases that are neither a label nor a synonym to the nearest label with
this graph (affordance_grounding.inference.text_encoder). It is a separate file because it is
large (about 250 MB for ViT-B/16) and optional. It uses the TorchScript exporter
(``dynamo=False``) with open_clip's attention fast path off: the graph is small, and its
parity is checked below either way.
"""

from pathlib import Path

from affordance_grounding.config import load_model_config
from affordance_grounding.fileio import atomic_write
from affordance_grounding.inference.io_spec import BATCH_DIM_NAME, ONNX_OPSET
import numpy as np
import torch
from training.parity import ExportError, FP32_ATOL

PARITY_PHRASES = ('hold', 'slice it', 'an item to pour with')


class ClipTextTower(torch.nn.Module):
    """open_clip's text tower as a graph: (B, context) int64 tokens -> (B, E) unit embeddings."""

    def __init__(self, clip_model: torch.nn.Module):
        """Wrap a loaded open_clip model (only the text tower ends up in the graph)."""
        super().__init__()
        self.clip = clip_model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encode and L2-normalise."""
        return torch.nn.functional.normalize(self.clip.encode_text(tokens).float(), dim=-1)


def write_text_tower_onnx(tower: ClipTextTower, tokens: torch.Tensor, path: Path,
                          clip_model: str) -> None:
    """Export ``tower`` to ``path`` with the metadata the runtime's text encoder reads."""
    import onnx
    from affordance_grounding.inference.text_encoder import (
        CLIP_MODEL_KEY, CONTEXT_LENGTH_KEY, EMBEDDING_NAME, TOKENS_NAME)

    torch.onnx.export(tower, (tokens,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                      input_names=[TOKENS_NAME], output_names=[EMBEDDING_NAME],
                      dynamic_axes={TOKENS_NAME: {0: BATCH_DIM_NAME},
                                    EMBEDDING_NAME: {0: BATCH_DIM_NAME}})
    model = onnx.load(str(path))
    for key, value in ((CLIP_MODEL_KEY, clip_model), (CONTEXT_LENGTH_KEY, str(tokens.shape[1]))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))


def measure_text_tower_error(tower: ClipTextTower, tokens: torch.Tensor, path: Path) -> float:
    """Largest |ONNX Runtime - PyTorch| over the embeddings of ``tokens``."""
    import onnxruntime
    from affordance_grounding.inference.text_encoder import EMBEDDING_NAME, TOKENS_NAME

    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    actual = session.run([EMBEDDING_NAME], {TOKENS_NAME: tokens.numpy()})[0]
    with torch.inference_mode():
        expected = tower(tokens).numpy()
    return float(np.abs(actual - expected).max())


def export_text_tower(config_path_or_config, out_path: str, atol: float = FP32_ATOL) -> Path:
    """Write the CLIP text tower of a model config as ONNX and check it against PyTorch.

    Args:
        config_path_or_config: The model config (or its YAML path) whose CLIP weights to use.
        out_path: Destination, normally ``runtime.text_encoder.text_model_path(model)``.
        atol: Largest accepted |ONNX - PyTorch| on the embeddings of a few phrases.

    Returns:
        The written path (it appears only when the check passes).

    Raises:
        ExportError: If ONNX Runtime disagrees with PyTorch.
    """
    from affordance_grounding.model.backbones import build_clip_tokenizer, load_clip_model

    config = config_path_or_config
    if isinstance(config, (str, Path)):
        config = load_model_config(str(config))
    tower = ClipTextTower(load_clip_model(config)).eval()
    tokens = build_clip_tokenizer(config)(list(PARITY_PHRASES))  # (3, context)

    def write_checked(temporary: Path) -> None:
        write_text_tower_onnx(tower, tokens, temporary, config.clip_model)
        error = measure_text_tower_error(tower, tokens, temporary)
        if not error <= atol:
            raise ExportError(f'text tower: ONNX Runtime differs from PyTorch by {error:.3g} '
                              f'> {atol:g}')

    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # open_clip's attention, see docs/export.md
    try:
        return atomic_write(out_path, write_checked)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
