"""Start-up, lifecycle transitions and configure-time errors of the node process."""

import time

from harness.graph_client import wait_for_diagnostics
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import numpy as np
import pytest

pytestmark = pytest.mark.ros


def call(client_node, service_type, name, request, timeout_s=20.0):
    """Call a service of the node and return the response."""
    service = client_node.create_client(service_type, name)
    assert service.wait_for_service(timeout_sec=timeout_s), f'{name} never appeared'
    future = service.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done():
        assert time.monotonic() < deadline, f'{name} did not answer'
        time.sleep(0.05)
    client_node.destroy_client(service)
    return future.result()


def get_state(client_node) -> str:
    return call(client_node, GetState, '/affordance/affordance_grounding/get_state',
                GetState.Request()).current_state.label


def set_parameter(client_node, name: str, value: str):
    """Set one string parameter of the node over its service; return the SetParametersResult."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    request = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
        type=ParameterType.PARAMETER_STRING, string_value=value))])
    return call(client_node, SetParameters, '/affordance/affordance_grounding/set_parameters',
                request).results[0]


def change_state(client_node, transition_id: int) -> bool:
    request = ChangeState.Request()
    request.transition.id = transition_id
    return call(client_node, ChangeState, '/affordance/affordance_grounding/change_state',
                request).success


def test_node_autostarts_and_walks_the_lifecycle(synthetic_onnx, start_node, make_client):
    node = start_node(model_path=str(synthetic_onnx), device='cpu', default_action='hold')
    client = make_client()
    client.wait_for_node()
    assert get_state(client) == 'active'
    assert client.wait_for('active_action').data == 'hold'  # default_action, latched
    log = node.wait_for_log('out /diagnostics [DiagnosticArray]')  # the start-up topic list
    assert 'out /affordance/heatmap [Image]' in log
    image = np.zeros((48, 64, 3), np.uint8)
    header = client.publish_image(image)
    client.wait_for('heatmap', lambda m: m.header.stamp == header.stamp)

    assert change_state(client, Transition.TRANSITION_DEACTIVATE)
    assert get_state(client) == 'inactive'
    # Inactive means unsubscribed: await that, then the node's next report, not a timeout.
    client.wait_until(lambda: client.image_pub.get_subscription_count() == 0, 20.0,
                      'the inactive node to unsubscribe from image')
    # A report that counts the image sent while active (the newest may predate it).
    received = int(wait_for_diagnostics(
        client, lambda v: int(v['images received']) >= 1)['images received'])
    header = client.publish_image(image)
    reports = len(client.messages('/diagnostics'))
    client.wait_for('/diagnostics', skip=reports + 1)  # a full diagnostic period later
    assert int(wait_for_diagnostics(client, lambda v: True)['images received']) == received
    assert not [m for m in client.messages('heatmap') if m.header.stamp == header.stamp]

    assert change_state(client, Transition.TRANSITION_ACTIVATE)
    assert get_state(client) == 'active'
    client.wait_for_node()
    header = client.publish_image(image)
    client.wait_for('heatmap', lambda m: m.header.stamp == header.stamp)

    assert change_state(client, Transition.TRANSITION_DEACTIVATE)
    assert change_state(client, Transition.TRANSITION_CLEANUP)
    assert get_state(client) == 'unconfigured'
    assert change_state(client, Transition.TRANSITION_CONFIGURE)
    assert change_state(client, Transition.TRANSITION_ACTIVATE)
    header = client.publish_image(image)
    client.wait_for('heatmap', lambda m: m.header.stamp == header.stamp)
    assert node.stop() == 0, node.log()


@pytest.mark.parametrize('model, fragments', [
    ('missing', ['configure failed', 'not found', 'missing.onnx']),
    ('corrupt', ['configure failed', 'corrupt.onnx']),
    ('empty', ['configure failed', 'model_path is empty']),
])
def test_node_with_a_bad_model_stays_unconfigured_and_says_why(
        tmp_path, start_node, make_client, model, fragments):
    path = {'missing': str(tmp_path / 'missing.onnx'), 'empty': ''}.get(model)
    if model == 'corrupt':
        path = str(tmp_path / 'corrupt.onnx')
        (tmp_path / 'corrupt.onnx').write_bytes(b'\x08\x07not a protobuf' * 50)
    node = start_node(model_path=path, device='cpu')
    log = node.wait_for_log('stays unconfigured')
    for fragment in fragments:
        assert fragment in log, log
    client = make_client(outputs=('/diagnostics',))
    values = wait_for_diagnostics(client, lambda v: v['message'].startswith('configure failed'))
    assert values['state'] == 'unconfigured'
    assert values['level'] == '2'  # DiagnosticStatus.ERROR
    assert get_state(client) == 'unconfigured'
    assert node.process.poll() is None  # alive: fix the file, then configure again


def test_node_rejects_invalid_parameters_at_configure(synthetic_onnx, start_node):
    node = start_node(model_path=str(synthetic_onnx), device='cpu', mask_threshold=1.5)
    log = node.wait_for_log('stays unconfigured')
    assert 'mask_threshold' in log and '1.5' in log


def test_node_changes_action_through_the_parameter(synthetic_onnx, start_node, make_client):
    start_node(model_path=str(synthetic_onnx), device='cpu')
    client = make_client()
    client.wait_for_node()
    assert set_parameter(client, 'default_action', 'pour').successful
    assert client.wait_for('active_action', lambda m: m.data == 'pour').data == 'pour'
    result = set_parameter(client, 'default_action', 'fly')
    assert not result.successful and 'fly' in result.reason
    result = set_parameter(client, 'backend', 'torch')
    assert not result.successful and 'deactivate it first' in result.reason


def test_a_fixed_model_path_is_read_at_the_next_configure(
        tmp_path, synthetic_onnx, start_node, make_client):
    """The recovery path of the docs: set the parameter, configure, activate; no restart."""
    node = start_node(model_path=str(tmp_path / 'missing.onnx'), device='cpu',
                      default_action='hold')
    node.wait_for_log('stays unconfigured')
    client = make_client()
    assert get_state(client) == 'unconfigured'
    assert set_parameter(client, 'model_path', str(synthetic_onnx)).successful
    assert change_state(client, Transition.TRANSITION_CONFIGURE), node.log()
    assert change_state(client, Transition.TRANSITION_ACTIVATE), node.log()
    client.wait_for_node()
    header = client.publish_image(np.zeros((48, 64, 3), np.uint8))
    client.wait_for('heatmap', lambda m: m.header.stamp == header.stamp)
    result = set_parameter(client, 'model_path', str(tmp_path / 'other.onnx'))
    assert not result.successful and 'deactivate it first' in result.reason
    assert change_state(client, Transition.TRANSITION_DEACTIVATE)
    assert set_parameter(client, 'model_path', str(tmp_path / 'other.onnx')).successful
    assert 'model_path: takes effect at the next configure' in node.log()
    assert node.stop() == 0, node.log()
