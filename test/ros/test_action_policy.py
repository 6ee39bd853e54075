"""One action policy: the node and the bag tool follow the same command sequence alike."""

from harness.action_sequences import NODE_RULE_LABELS, REPLAYED_ACTIONS
import pytest

pytestmark = pytest.mark.ros


@pytest.fixture
def configured_node(ros_context, tiny_onnx):
    """Yield the node, in this process, configured on the tiny model (not activated)."""
    from affordance_grounding.ros.node import AffordanceNode
    from rclpy.parameter import Parameter

    node = AffordanceNode(context=ros_context, parameter_overrides=[
        Parameter('model_path', value=str(tiny_onnx)), Parameter('device', value='cpu'),
        Parameter('backend', value='onnxruntime')])
    node.trigger_configure()
    assert node.phase == 'inactive', node.failure
    yield node
    node.trigger_cleanup()
    node.destroy_node()


def test_node_rule_gives_each_frame_what_the_bag_tool_gives_it(configured_node):
    from std_msgs.msg import String

    commands = dict(REPLAYED_ACTIONS)
    labels = []
    for index in range(len(NODE_RULE_LABELS)):
        if index in commands:  # recorded just before the frame, as in the bag
            configured_node._on_action(String(data=commands[index]))
        labels.append(configured_node.state.command[0])
    assert tuple(labels) == NODE_RULE_LABELS  # the bag tool's test asserts the same tuple
    assert configured_node.health.problems.counts['bad_action'] == 3  # fly, fly, zzz
