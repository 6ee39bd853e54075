"""Node parameters: defaults equal config/params.yaml, validation errors, real declaration."""

import dataclasses
import math
from pathlib import Path

from affordance_grounding.ros.params import (
    declare_and_read, DESCRIPTIONS, NodeConfig, ParameterError, parse_default_action,
    READ_AT_CONFIGURE, update_config)
from affordance_grounding.vocabulary import AGD20K_SEEN, HICO_IIF, parse_action_command
import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
import yaml

pytestmark = pytest.mark.ros

PARAMS_YAML = Path(__file__).resolve().parents[2] / 'config' / 'params.yaml'


def shipped_parameters():
    return yaml.safe_load(PARAMS_YAML.read_text())['/**']['ros__parameters']


def test_node_config_defaults_equal_params_yaml():
    fields = {field.name: field.default for field in dataclasses.fields(NodeConfig)}
    assert fields == {name: tuple(value) if isinstance(value, list) else value
                      for name, value in shipped_parameters().items()}
    assert set(DESCRIPTIONS) == set(fields)


def test_node_config_defaults_are_valid_and_frozen():
    config = NodeConfig().validate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.backend = 'torch'


@pytest.mark.parametrize('changes, fragments', [
    ({'backend': 'cudnn'}, ['backend', "'cudnn'", 'tensorrt', 'onnxruntime', 'torch', 'auto']),
    ({'calibration': 'mean'}, ['calibration', "'mean'", 'clip_local_mean']),
    ({'heatmap_resolution': 'full'}, ['heatmap_resolution', "'full'", 'input', 'model']),
    ({'image_qos': 'best_effort'}, ['image_qos', 'sensor_data', 'system_default']),
    ({'labels': 'coco'}, ['labels', "'coco'", 'hico_iif']),
    ({'colormap': 'rainbowz'}, ['colormap', "'rainbowz'", 'jet', 'turbo']),
    ({'device': 'gpu'}, ['device', "'gpu'", 'cuda:N']),
    ({'precision': 'int8'}, ['precision', "'int8'", 'fp32', 'fp16']),
    ({'mask_threshold': 1.5}, ['mask_threshold', '1.5', '[0.0, 1.0]']),
    ({'mask_threshold': math.nan}, ['mask_threshold', 'nan', '[0.0, 1.0]']),
    ({'overlay_alpha': -0.1}, ['overlay_alpha', '-0.1', '[0.0, 1.0]']),
    ({'max_rate_hz': -1.0}, ['max_rate_hz', '-1.0', '>= 0']),
    ({'roi_source': 'boxes'}, ['roi_source', "'boxes'", 'none', 'roi', 'detections']),
    ({'roi_margin': -0.1}, ['roi_margin', '-0.1', '[0.0, 10.0]']),
    ({'roi_margin': math.inf}, ['roi_margin', 'inf', 'fraction of the box']),
    ({'max_regions': 0}, ['max_regions', '0', '>= 1']),
    ({'max_image_age_s': -0.5}, ['max_image_age_s', '-0.5', '>= 0']),
    ({'sync_slop_s': 0.0}, ['sync_slop_s', '0.0', '> 0']),
    ({'diagnostic_period': -1.0}, ['diagnostic_period', '> 0']),
    ({'expected_rate_hz': 0.0}, ['expected_rate_hz', '> 0']),
    ({'expected_rate_hz': 'fast'}, ['expected_rate_hz', "'fast'", 'must be a number']),
])
def test_validate_names_parameter_value_and_allowed(changes, fragments):
    with pytest.raises(ParameterError) as error:
        dataclasses.replace(NodeConfig(), **changes).validate()
    assert isinstance(error.value, ValueError)
    for fragment in fragments:
        assert fragment in str(error.value)


@pytest.mark.parametrize('changes', [
    {'device': 'cuda:1'}, {'device': 'cpu'}, {'default_action': 'hold'},
    {'labels': 'hico_iif', 'default_action': 'pour'}, {'labels': '', 'default_action': 'x'},
    {'max_rate_hz': 0.0, 'max_image_age_s': 0.0}, {'mask_threshold': 1.0},
    {'roi_source': 'detections', 'roi_margin': 0.0, 'max_regions': 1},
])
def test_validate_accepts_edge_values(changes):
    config = dataclasses.replace(NodeConfig(), **changes)
    assert config.validate() is config


@pytest.mark.parametrize('text, label', [('cut with', 'cut_with'), ('grab', 'hold'),
                                         ('Pour', 'pour'), ('', '')])
def test_default_action_goes_through_the_action_topic_parser(text, label):
    config = dataclasses.replace(NodeConfig(), default_action=text).validate()
    command = parse_default_action(config, AGD20K_SEEN)
    assert command == parse_action_command(text, AGD20K_SEEN) and command.label == label


def test_default_action_unknown_names_parameter_and_labels():
    config = dataclasses.replace(NodeConfig(), default_action='fly').validate()
    with pytest.raises(ParameterError) as error:
        parse_default_action(config, AGD20K_SEEN)
    for fragment in ('default_action', "'fly'", '36 labels', 'cut_with'):
        assert fragment in str(error.value)
    with pytest.raises(ParameterError, match="'scribble' means 'write'"):
        parse_default_action(dataclasses.replace(config, default_action='scribble'), HICO_IIF)


def test_update_config_applies_coerced_runtime_changes():
    config = NodeConfig()
    updated, waiting = update_config(config, {'mask_threshold': 0.7, 'max_rate_hz': 5,
                                              'use_sim_time': True, 'backend': 'auto'},
                                     active=True)
    assert updated == dataclasses.replace(config, mask_threshold=0.7, max_rate_hz=5.0)
    assert waiting == ()
    assert config.mask_threshold == 0.5


@pytest.mark.parametrize('changes, match', [
    ({'backend': 'torch'}, 'backend is read at configure and the node is active; deactivate'),
    ({'mask_threshold': 'high'}, "mask_threshold='high' has type str"),
    ({'overlay_alpha': 3.0}, 'overlay_alpha=3.0 is out of range'),
    ({'roi_source': 'roi'}, 'roi_source is read at configure and the node is active'),
    ({'max_regions': 2.5}, 'max_regions=2.5 has type float'),
])
def test_update_config_rejects_configure_time_and_invalid_changes_while_active(changes, match):
    with pytest.raises(ParameterError, match=match):
        update_config(NodeConfig(), changes, active=True)


def test_update_config_keeps_configure_time_changes_for_the_next_configure():
    config = NodeConfig(model_path='old.onnx')
    changes = {'model_path': 'new.onnx', 'mask_threshold': 0.7}
    updated, waiting = update_config(config, changes, active=False)  # inactive
    assert waiting == ('model_path',)
    assert updated == dataclasses.replace(config, mask_threshold=0.7)  # model at configure
    assert update_config(None, changes, active=False) == (None, ('model_path',))  # unconfigured
    with pytest.raises(ParameterError, match='model_path=3 has type int'):
        update_config(None, {'model_path': 3}, active=False)


@pytest.fixture
def make_node():
    """Yield a factory of plain rclpy nodes in a private context, shut down afterwards."""
    context = rclpy.Context()
    rclpy.init(context=context)
    nodes = []

    def factory(overrides=()):
        node = Node('affordance_grounding', context=context,
                    parameter_overrides=list(overrides))
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown(context=context)


def test_declare_and_read_returns_defaults(make_node):
    node = make_node()
    assert declare_and_read(node) == NodeConfig()
    for name, value in shipped_parameters().items():
        assert node.get_parameter(name).value == value


def test_declare_and_read_applies_overrides(make_node):
    node = make_node([
        Parameter('backend', value='onnxruntime'),
        Parameter('device', value='cpu'),
        Parameter('mask_threshold', value=0.3),
        Parameter('max_rate_hz', value=15),  # an integer in YAML for a float parameter
        Parameter('enable_3d', value=True),
        Parameter('default_action', value='pour'),
    ])
    config = declare_and_read(node)
    assert config == dataclasses.replace(NodeConfig(), backend='onnxruntime', device='cpu',
                                         mask_threshold=0.3, max_rate_hz=15.0, enable_3d=True,
                                         default_action='pour')
    assert isinstance(config.max_rate_hz, float)


def test_declare_and_read_sets_descriptors(make_node):
    node = make_node()
    declare_and_read(node)
    backend, threshold = node.describe_parameters(['backend', 'mask_threshold'])
    assert 'tensorrt' in backend.description and '[0, 1]' in threshold.description
    assert not backend.read_only and 'read at configure' in backend.additional_constraints
    assert threshold.additional_constraints == 'applies at once'
    # Settable (the node's own callback decides when): configure reads the new value.
    assert node.set_parameters([Parameter('backend', value='torch')])[0].successful
    assert declare_and_read(node).backend == 'torch'


def test_declare_and_read_rejects_a_wrong_type_with_the_parameter_name(make_node):
    node = make_node([Parameter('mask_largest_component', value='yes')])
    with pytest.raises(ParameterError, match="mask_largest_component='yes' has type str"):
        declare_and_read(node)


def test_declare_and_read_rejects_invalid_override(make_node):
    node = make_node([Parameter('mask_threshold', value=2.0)])
    with pytest.raises(ParameterError, match=r'mask_threshold=2.0 is out of range'):
        declare_and_read(node)


def test_declare_and_read_rejects_wrong_type_for_float(make_node):
    node = make_node([Parameter('sync_slop_s', value='fast')])
    with pytest.raises(ParameterError, match="sync_slop_s='fast' has type str; expected float"):
        declare_and_read(node)


def test_declare_and_read_can_run_twice_on_one_node(make_node):
    node = make_node([Parameter('colormap', value='turbo')])
    assert declare_and_read(node) == declare_and_read(node)


def test_cameras_default_to_one_camera_and_accept_a_list(make_node):
    assert declare_and_read(make_node()).cameras == ()
    node = make_node([Parameter('cameras', value=['head', 'wrist'])])
    assert declare_and_read(node).cameras == ('head', 'wrist')


@pytest.mark.parametrize('cameras, match', [
    (['head', 'head'], 'names a camera twice'),
    (['head/left'], 'not a valid camera name'),
    (['2nd'], 'not a valid camera name'),
])
def test_cameras_reject_names_that_are_no_topic_namespace(cameras, match):
    with pytest.raises(ParameterError, match=match):
        NodeConfig(cameras=tuple(cameras)).validate()


def test_cameras_reject_a_list_of_numbers(make_node):
    node = make_node([Parameter('cameras', value=[1, 2])])
    with pytest.raises(ParameterError, match='must be a list of strings'):
        declare_and_read(node)


def test_ros_interface_doc_marks_exactly_the_parameters_read_at_configure():
    doc = (PARAMS_YAML.parents[1] / 'docs/ros_interface.md').read_text()
    rows = [line.split('|') for line in doc.splitlines() if line.startswith('| `')]
    marked = {cells[1].strip().strip('`') for cells in rows if cells[-2].strip() == 'at configure'}
    assert marked == set(READ_AT_CONFIGURE)
