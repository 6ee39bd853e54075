"""Runtime fixtures: the tiny model as a bundle and as an exported ONNX graph (built once)."""

from affordance_grounding.model.checkpoint import save_bundle
import pytest
from training.export import export_onnx


@pytest.fixture(scope='session')
def tiny_bundle(tiny_grounder, tmp_path_factory):
    """Return the path of a bundle holding the tiny grounder (random backbones embedded)."""
    return save_bundle(str(tmp_path_factory.mktemp('bundle') / 'tiny.pt'), tiny_grounder)


@pytest.fixture(scope='session')
def tiny_onnx(tiny_grounder, tmp_path_factory):
    """Return the path of the tiny grounder exported to ONNX (calibration clip, fp32)."""
    path = tmp_path_factory.mktemp('onnx') / 'tiny.onnx'
    export_onnx(tiny_grounder, str(path))
    return path
