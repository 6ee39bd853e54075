"""ONNX export: single-file graph, dynamic batch, opset 20, metadata, parity, loud failures."""

from pathlib import Path

from affordance_grounding.config import ModelConfig
from affordance_grounding.inference.graph import GroundingGraph
from affordance_grounding.inference.io_spec import (
    compute_file_sha256, INPUT_NAME, OUTPUT_NAMES)
from affordance_grounding.inference.onnx_model import (
    default_opset, find_tensorrt_problems, is_fp16_typed, load_onnx_model, read_onnx_metadata)
from affordance_grounding.model.checkpoint import save_bundle
from affordance_grounding.model.factory import build_grounder
import numpy as np
import onnxruntime
import pytest
import torch
from training import graph_export
from training.export import main
from training.graph_export import export_onnx, ExportOptions
from training.parity import compute_min_map_cosine, ExportError, find_parity_failures


EXPORTER_CALLS = []  # the ``dynamo`` argument of each torch.onnx.export call of the fixture


@pytest.fixture(scope='module')
def exported(tiny_grounder, tmp_path_factory):
    """Export the tiny model and its text tower through the CLI from a bundle.

    Returns (onnx path, bundle path); records how the exporter was called in EXPORTER_CALLS.
    """
    folder = tmp_path_factory.mktemp('export')
    bundle = save_bundle(str(folder / 'tiny.pt'), tiny_grounder)
    onnx_path = folder / 'tiny.onnx'
    real_export = torch.onnx.export

    def recording_export(*args, **kwargs):
        EXPORTER_CALLS.append(kwargs.get('dynamo'))
        return real_export(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.onnx, 'export', recording_export)
        assert main(['--checkpoint', str(bundle), '--out', str(onnx_path), '--text-tower']) == 0
    return onnx_path, bundle


def test_text_tower_is_written_as_out_stem_dot_text_onnx_with_torchscript(exported):
    onnx_path, _ = exported
    assert sorted(path.name for path in onnx_path.parent.glob('*.onnx')) == [
        'tiny.onnx', 'tiny.text.onnx']  # not tiny.onnx.text.onnx
    assert EXPORTER_CALLS == [True, False]  # the graph: dynamo; the text tower: dynamo=False
    export_doc = (Path(__file__).resolve().parents[2] / 'docs/export.md').read_text()
    assert '`--text-tower` also writes `<out stem>.text.onnx`' in export_doc


def run_session(path: Path, images: torch.Tensor):
    """Run an exported graph with ONNX Runtime on the CPU; returns the three outputs."""
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.numpy()})


def test_export_cli_writes_one_self_contained_file(exported):
    onnx_path, bundle = exported
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == [
        'tiny.onnx', 'tiny.pt', 'tiny.text.onnx']  # no side .data file, no temporary left
    assert onnx_path.stat().st_size > 100_000  # weights inside, no side .data file


@pytest.mark.parametrize('batch', [1, 2])
def test_export_onnxruntime_matches_torch(exported, tiny_grounder, tiny_images, batch):
    images = tiny_images[:batch]
    with torch.inference_mode():
        expected = [t.numpy() for t in GroundingGraph(tiny_grounder, 'clip')(images)]
    actual = run_session(exported[0], images)
    classes = len(tiny_grounder.labels)
    shapes = [(batch, classes, 224, 224), (batch, classes, 14, 14), (batch, classes, 14, 14)]
    for name, got, want, shape in zip(OUTPUT_NAMES, actual, expected, shapes):
        assert got.shape == shape, name
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=name)


def test_export_affordance_is_upsampled_calibrated_map(exported, tiny_grounder, tiny_images):
    with torch.inference_mode():
        maps = tiny_grounder(tiny_images[:1])
        expected = tiny_grounder.heatmaps(maps, 'clip').numpy()
    affordance = run_session(exported[0], tiny_images[:1])[0]
    np.testing.assert_allclose(affordance, expected, rtol=0, atol=1e-4)
    assert affordance.min() >= 0.0 and affordance.max() <= 1.0 + 1e-6


def test_export_graph_has_dynamic_batch_opset_20_and_no_attention_op(exported):
    model = load_onnx_model(str(exported[0]))
    assert default_opset(model) == 20
    assert 'Attention' not in {node.op_type for node in model.graph.node}
    assert find_tensorrt_problems(model) == []
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == 'batch', value.name
        assert all(dim.HasField('dim_value') for dim in dims[1:]), value.name
    assert [value.name for value in model.graph.input] == ['image']
    assert [value.name for value in model.graph.output] == ['affordance', 'cam', 'affinity']


def test_export_metadata_records_labels_preprocessing_and_bundle_hash(exported, tiny_config):
    onnx_path, bundle = exported
    metadata = read_onnx_metadata(load_onnx_model(str(onnx_path)), str(onnx_path))
    assert metadata.labels == tiny_config.labels
    assert metadata.calibration == 'clip'
    assert (metadata.image_size, metadata.grid_size) == (224, 14)
    assert metadata.mean == pytest.approx((0.485, 0.456, 0.406))
    assert metadata.std == pytest.approx((0.229, 0.224, 0.225))
    assert metadata.precision == 'fp32'
    assert metadata.source_sha256 == compute_file_sha256(str(bundle))


def test_export_fp16_graph_is_fp16_typed_with_float32_interface(tiny_grounder, tmp_path,
                                                                tiny_images):
    path = tmp_path / 'tiny_fp16.onnx'
    report = export_onnx(tiny_grounder, str(path), ExportOptions(precision='fp16'))
    model = load_onnx_model(str(path))
    assert is_fp16_typed(model)
    assert read_onnx_metadata(model, str(path)).precision == 'fp16'
    assert all(value.type.tensor_type.elem_type == 1 for value in model.graph.output)  # FLOAT
    for batch in (1, 2):
        assert report.min_cosine[batch]['cam'] >= 0.999
        assert report.min_cosine[batch]['affinity'] >= 0.999
    assert next(tiny_grounder.clip.parameters()).dtype == torch.float32  # original untouched


def test_export_past_tolerance_fails_loudly_and_writes_nothing(tiny_grounder, tmp_path):
    path = tmp_path / 'strict.onnx'
    with pytest.raises(ExportError) as info:
        export_onnx(tiny_grounder, str(path), ExportOptions(atol=1e-12, calibration='none'))
    message = str(info.value)
    assert 'max abs error' in message and 'batch 1' in message and 'batch 2' in message
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_export_falls_back_to_torchscript_when_dynamo_fails(tiny_grounder, tmp_path,
                                                            monkeypatch, tiny_images):
    real_export = torch.onnx.export

    def failing_dynamo(*args, **kwargs):
        if kwargs.get('dynamo'):
            raise RuntimeError('simulated dynamo failure')
        return real_export(*args, **kwargs)

    monkeypatch.setattr(graph_export.torch.onnx, 'export', failing_dynamo)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    path = tmp_path / 'torchscript.onnx'
    report = export_onnx(tiny_grounder, str(path), ExportOptions(calibration='clip_local_mean'))
    assert report.exporter == 'torchscript'
    assert 'simulated dynamo failure' in report.fallback_reason
    assert torch.backends.mha.get_fastpath_enabled() == fastpath
    assert max(report.max_abs_error[2].values()) <= 1e-4
    metadata = read_onnx_metadata(load_onnx_model(str(path)), str(path))
    assert metadata.calibration == 'clip_local_mean'
    batch_dim = load_onnx_model(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == 'batch'


def test_find_parity_failures_lists_each_output_past_tolerance():
    max_abs_error = {1: {'affordance': 2e-4, 'cam': 1e-6, 'affinity': float('nan')}}
    min_cosine = {1: {'affordance': 0.5, 'cam': 0.9999, 'affinity': 0.99}}
    fp32 = find_parity_failures(max_abs_error, min_cosine, 'fp32')
    assert len(fp32) == 2
    assert fp32[0].startswith('batch 1 affordance: max abs error 0.0002')
    assert 'affinity' in fp32[1]  # NaN never passes
    fp16 = find_parity_failures(max_abs_error, min_cosine, 'fp16')
    assert fp16 == ['batch 1 affinity: min map cosine 0.990000 < 0.999']


def test_compute_min_map_cosine_on_hand_computed_maps():
    expected = np.zeros((1, 2, 1, 2), dtype=np.float32)
    expected[0, 0, 0] = (1.0, 0.0)
    expected[0, 1, 0] = (1.0, 1.0)
    actual = expected.copy()
    actual[0, 1, 0] = (1.0, 0.0)  # 45 degrees from (1, 1)
    assert compute_min_map_cosine(actual, expected) == pytest.approx(np.sqrt(0.5))
    assert compute_min_map_cosine(np.zeros_like(expected), np.zeros_like(expected)) == 1.0


def test_export_cli_reports_corrupt_checkpoint(tmp_path, capsys):
    bundle = tmp_path / 'broken.pt'
    bundle.write_bytes(b'PK\x03\x04 not really a zip')
    assert main(['--checkpoint', str(bundle), '--out', str(tmp_path / 'x.onnx')]) == 2
    error = capsys.readouterr().err
    assert str(bundle) in error and 'corrupt' in error
    assert not (tmp_path / 'x.onnx').exists()


@pytest.mark.slow
def test_export_full_size_architecture_matches_torch(tmp_path):
    torch.manual_seed(0)
    grounder = build_grounder(ModelConfig(clip_weights=None, dino_weights=None)).eval()
    path = tmp_path / 'full.onnx'
    report = export_onnx(grounder, str(path))
    for batch in (1, 2):
        for name in OUTPUT_NAMES:
            assert report.max_abs_error[batch][name] <= 1e-4, (batch, name)
    model = load_onnx_model(str(path))
    assert find_tensorrt_problems(model) == []
    assert len(read_onnx_metadata(model, str(path)).labels) == 36
