"""The tiny ONNX model loaded once for the bag tests, and its known-answer pipeline."""

from affordance_grounding.inference.backends import OnnxRuntimeBackend
from affordance_grounding.perception.frame_pipeline import FramePipeline
import pytest


@pytest.fixture(scope='module')
def tiny_backend(tiny_onnx):
    """Return the tiny ONNX graph loaded in ONNX Runtime on the CPU."""
    backend = OnnxRuntimeBackend(str(tiny_onnx), 'cpu').load()
    yield backend
    backend.close()


@pytest.fixture(scope='module')
def known_answer(tiny_backend):
    """Return a frame pipeline run in-process, one frame at a time (what the node does)."""
    return FramePipeline(tiny_backend)
