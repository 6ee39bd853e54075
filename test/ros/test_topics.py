"""The node's topic bookkeeping: which inputs exist, with which types and names (no traffic)."""

from affordance_grounding.ros.params import NodeConfig
from affordance_grounding.ros.topics import colour_topic, InputCallbacks, NodeTopics
import pytest
from rclpy.lifecycle import LifecycleNode
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

pytestmark = pytest.mark.ros


@pytest.fixture
def lifecycle_node(ros_context):
    """Yield a lifecycle node in /affordance whose ``image`` is remapped like a camera's."""
    node = LifecycleNode('topics_test', namespace='affordance', context=ros_context,
                         cli_args=['--ros-args', '-r', 'image:=/camera/color/image_raw'])
    yield node
    node.destroy_node()


def callbacks() -> InputCallbacks:
    def ignore(*args):
        return None
    return InputCallbacks(image=ignore, action=ignore, depth=ignore, camera_info=ignore,
                          lost=ignore)


@pytest.mark.parametrize('transport, colour_type, colour_name', [
    ('raw', Image, '/camera/color/image_raw'),
    ('compressed', CompressedImage, '/camera/color/image_raw/compressed'),
])
def test_inputs_follow_image_transport_and_depth_stays_raw(lifecycle_node, transport,
                                                           colour_type, colour_name):
    topics = NodeTopics(lifecycle_node)
    config = NodeConfig(image_transport=transport, enable_3d=True)
    topics.create_publishers(config)
    topics.subscribe(config, callbacks())
    found = {sub.topic_name: sub.msg_type for sub in topics.inputs}
    assert found == {colour_name: colour_type, '/affordance/action': String,
                     '/affordance/depth': Image, '/affordance/camera_info': CameraInfo}
    assert topics.inputs[0].topic_name == colour_name  # the colour input comes first
    lines = topics.describe()
    assert any(line.startswith(f'in  {colour_name} [{colour_type.__name__}]') for line in lines)
    assert any(line.startswith('out /affordance/heatmap [Image]') for line in lines)
    topics.unsubscribe()
    topics.destroy_publishers()
    assert topics.inputs == [] and topics.outputs is None


def test_without_3d_there_is_no_depth(lifecycle_node):
    topics = NodeTopics(lifecycle_node)
    config = NodeConfig()
    topics.create_publishers(config)
    topics.subscribe(config, callbacks())
    names = [sub.topic_name for sub in topics.inputs]
    assert names == ['/camera/color/image_raw', '/affordance/action']
    assert topics.outputs.grasp_point is None and topics.outputs.markers is None
    assert colour_topic(lifecycle_node, config) == 'image'
    topics.unsubscribe()
    topics.destroy_publishers()


def test_named_cameras_get_their_own_topics_and_remaps(ros_context):
    node = LifecycleNode('topics_cameras_test', namespace='affordance', context=ros_context,
                         cli_args=['--ros-args', '-r', 'head/image:=/head_camera/image_raw'])
    try:
        topics = NodeTopics(node)
        config = NodeConfig(cameras=('head', 'wrist'), image_transport='compressed',
                            enable_3d=True)
        assert list(topics.create_publishers(config)) == ['head', 'wrist']
        topics.subscribe(config, callbacks())
        found = {sub.topic_name: sub.msg_type for sub in topics.inputs}
        assert found == {
            '/head_camera/image_raw/compressed': CompressedImage,
            '/affordance/wrist/image/compressed': CompressedImage,
            '/affordance/action': String, '/affordance/head/action': String,
            '/affordance/wrist/action': String,
            '/affordance/head/depth': Image, '/affordance/wrist/depth': Image,
            '/affordance/head/camera_info': CameraInfo,
            '/affordance/wrist/camera_info': CameraInfo}
        outputs = {line.split()[1] for line in topics.describe() if line.startswith('out')}
        for camera in ('head', 'wrist'):
            for name in ('heatmap', 'grasp_mask', 'overlay', 'grasp_point', 'markers',
                         'affordance_cloud', 'grasp_pose', 'active_action'):
                assert f'/affordance/{camera}/{name}' in outputs
        assert '/affordance/active_action' in outputs and '/affordance/heatmap' not in outputs
        topics.unsubscribe()
        topics.destroy_publishers()
        assert topics.outputs is None
    finally:
        node.destroy_node()


def test_diagnostics_follow_qos_overrides_and_appear_in_the_topic_log(ros_context):
    from affordance_grounding.ros.diagnostics import NodeDiagnostics
    from rclpy.parameter import Parameter
    from rclpy.qos import ReliabilityPolicy

    node = LifecycleNode('topics_diagnostics_test', namespace='affordance', context=ros_context,
                         parameter_overrides=[
                             Parameter('qos_overrides./diagnostics.publisher.reliability',
                                       value='best_effort'),
                             Parameter('qos_overrides./diagnostics.publisher.depth', value=3)])
    try:
        diagnostics = NodeDiagnostics(node)
        profile = diagnostics.publisher.qos_profile
        assert (profile.reliability, profile.depth) == (ReliabilityPolicy.BEST_EFFORT, 3)
        topics = NodeTopics(node)
        topics.create_publishers(NodeConfig())
        lines = topics.describe(diagnostics.publisher)
        assert 'out /diagnostics [DiagnosticArray] qos best_effort/volatile/keep_last(3)' in lines
        topics.destroy_publishers()
    finally:
        node.destroy_node()
