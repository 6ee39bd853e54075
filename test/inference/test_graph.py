"""GroundingGraph: the exported/PyTorch graph equals the grounder's own maps, all classes."""

from affordance_grounding.inference.graph import build_grounding_graph, GroundingGraph
import pytest
import torch


@pytest.mark.parametrize('calibration', ['none', 'clip', 'clip_local_mean'])
def test_graph_outputs_equal_grounder_maps(tiny_grounder, tiny_images, calibration):
    graph = GroundingGraph(tiny_grounder, calibration)
    with torch.inference_mode():
        affordance, cam, affinity = graph(tiny_images[:2])
        maps = tiny_grounder(tiny_images[:2])
        expected = tiny_grounder.heatmaps(maps, calibration)
    assert affordance.dtype == cam.dtype == affinity.dtype == torch.float32
    assert affordance.shape == (2, 36, 224, 224)
    torch.testing.assert_close(affordance, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(cam, maps.cam, rtol=0, atol=0)
    torch.testing.assert_close(affinity, maps.affinity, rtol=0, atol=0)


def test_graph_metadata_describes_the_model(tiny_grounder, tiny_config):
    metadata = build_grounding_graph(tiny_grounder, 'clip_local_mean').metadata('f' * 64)
    assert metadata.labels == tiny_config.labels
    assert (metadata.calibration, metadata.precision) == ('clip_local_mean', 'fp32')
    assert (metadata.image_size, metadata.grid_size) == (224, 14)
    assert metadata.mean == tiny_config.dino_mean and metadata.std == tiny_config.dino_std
    assert metadata.source_sha256 == 'f' * 64


def test_fp16_graph_copies_the_backbones_and_keeps_float32_outputs(tiny_grounder):
    graph = build_grounding_graph(tiny_grounder, 'clip', 'fp16')
    assert next(graph.grounder.dino.parameters()).dtype == torch.float16
    assert next(graph.grounder.head.parameters()).dtype == torch.float32
    assert graph.grounder.item_text.dtype == torch.float32
    assert next(tiny_grounder.dino.parameters()).dtype == torch.float32


def test_graph_rejects_unknown_calibration_and_precision(tiny_grounder):
    with pytest.raises(ValueError, match='calibration'):
        GroundingGraph(tiny_grounder, 'softmax')
    with pytest.raises(ValueError, match='precision'):
        GroundingGraph(tiny_grounder, 'clip', 'int8')
