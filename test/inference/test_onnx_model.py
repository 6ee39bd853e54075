"""ONNX checks and the shared metadata: TensorRT constraints, interface, parsing errors."""

from affordance_grounding.inference.io_spec import (
    classify_model_file, MODEL_FORMAT, ModelFileError, ModelMetadata)
from affordance_grounding.inference.onnx_model import (
    find_interface_problems, find_tensorrt_problems, inspect_onnx_file, read_onnx_metadata,
    write_onnx_metadata)
import onnx
from onnx import helper, TensorProto
import pytest

METADATA = ModelMetadata(labels=('hold', 'cut'), calibration='clip', image_size=4, grid_size=2,
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def make_model(opset=20, nodes=None, dims=None, output_names=('affordance', 'cam', 'affinity')):
    """Build a small graph with our tensor names (shapes from METADATA unless overridden)."""
    dims = dims or {'image': ['batch', 3, 4, 4], 'affordance': ['batch', 2, 4, 4],
                    'cam': ['batch', 2, 2, 2], 'affinity': ['batch', 2, 2, 2]}
    nodes = nodes or [helper.make_node('Identity', ['image'], [name]) for name in output_names]
    graph = helper.make_graph(
        nodes, 'g', [helper.make_tensor_value_info('image', TensorProto.FLOAT, dims['image'])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims.get(name, ['batch']))
         for name in output_names])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def test_tensorrt_check_accepts_a_plain_opset_20_graph():
    assert find_tensorrt_problems(make_model()) == []


def test_tensorrt_check_flags_new_opsets_attention_and_custom_domains():
    nodes = [helper.make_node('Attention', ['image'], ['affordance']),
             helper.make_node('FusedMatMul', ['image'], ['cam'], domain='com.microsoft'),
             helper.make_node('Identity', ['image'], ['affinity'])]
    problems = find_tensorrt_problems(make_model(opset=23, nodes=nodes))
    assert problems[0].startswith('opset 23 > 20')
    assert 'unsupported op Attention' in problems
    assert "operators from custom domains ['com.microsoft']" in problems


def test_interface_check_accepts_expected_names_and_shapes():
    assert find_interface_problems(make_model(), METADATA) == []


def test_interface_check_flags_static_batch_symbolic_sizes_and_names():
    dims = {'image': [1, 3, 4, 4], 'affordance': ['batch', 2, 'h', 'w'],
            'cam': ['batch', 2, 2, 2], 'affinity': ['batch', 2, 2, 2]}
    problems = find_interface_problems(make_model(dims=dims), METADATA)
    assert any(p.startswith('image has shape [1, 3, 4, 4]') for p in problems)
    assert any(p.startswith("affordance has shape ['batch', 2, 'h', 'w']") for p in problems)
    renamed = make_model(output_names=('heatmap', 'cam', 'affinity'))
    assert any('tensor names' in p for p in find_interface_problems(renamed, METADATA))


def test_metadata_round_trip_through_onnx_props():
    model = make_model()
    model.metadata_props.add(key='author', value='kept')
    write_onnx_metadata(model, METADATA)
    write_onnx_metadata(model, METADATA)  # idempotent: no duplicate keys
    keys = [entry.key for entry in model.metadata_props]
    assert len(keys) == len(set(keys)) and 'author' in keys
    assert read_onnx_metadata(model, 'm.onnx') == METADATA


def test_metadata_parse_errors_name_the_file():
    with pytest.raises(ModelFileError, match='x.onnx: no affordance_grounding metadata'):
        ModelMetadata.from_props({}, 'x.onnx')
    props = dict(METADATA.to_props(), labels='[not json')
    with pytest.raises(ModelFileError, match='x.onnx: malformed model metadata'):
        ModelMetadata.from_props(props, 'x.onnx')
    assert METADATA.to_props()['format'] == MODEL_FORMAT


def test_check_labels_explains_the_difference():
    METADATA.check_labels(None, 'm.onnx')
    METADATA.check_labels(['hold', 'cut'], 'm.onnx')
    with pytest.raises(ModelFileError, match=r'not in the model: sit_on'):
        METADATA.check_labels(['hold', 'sit_on'], 'm.onnx')
    with pytest.raises(ModelFileError, match='different order'):
        METADATA.check_labels(['cut', 'hold'], 'm.onnx')


def test_inspect_onnx_file_reports_every_problem_with_the_fix(tmp_path):
    model = make_model(opset=23)
    write_onnx_metadata(model, METADATA)
    path = tmp_path / 'm.onnx'
    onnx.save_model(model, str(path))
    with pytest.raises(ModelFileError) as info:
        inspect_onnx_file(str(path))
    assert 'opset 23' in str(info.value) and 'docs/export.md' in str(info.value)
    assert inspect_onnx_file(str(path), check_tensorrt=False) == METADATA


@pytest.mark.parametrize('name, kind', [('m.onnx', 'onnx'), ('m.ENGINE', 'engine'),
                                        ('m.plan', 'engine'), ('m.pt', 'bundle'),
                                        ('m.pth', 'bundle')])
def test_classify_model_file(name, kind):
    assert classify_model_file(name) == kind


def test_classify_model_file_rejects_unknown_suffix():
    with pytest.raises(ModelFileError, match='unknown model file type'):
        classify_model_file('model.bin')
