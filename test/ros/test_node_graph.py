"""The node in its own process, driven over DDS by a client in this process.

One node (synthetic-pretrained backbones, ONNX Runtime CPU, 3D enabled) serves the tests of
this module: outputs and headers, encodings, the action latch, bad input of every kind, 3D,
diagnostics. Each test sets the action it needs (:func:`set_action`), so any order works.
Nothing is checked by "nothing arrived after N seconds": a negative check waits for the
node's own count of the frame it dropped; where a head start is needed it is derived from a
measured round trip (:func:`dds_round_trip_s`).
"""

import array
import time

from affordance_grounding.inference.backends import OnnxRuntimeBackend
from affordance_grounding.perception.frame_pipeline import FramePipeline, OutputSettings
from affordance_grounding.perception.image_codecs import image_msg_to_array
from affordance_grounding.perception.mask import compute_grasp_mask
from affordance_grounding.ros.conversions import array_to_image_msg
import cv2
from harness.graph_client import GraphClient, wait_for_diagnostics
from harness.node_process import NodeProcess
from harness.scene_frames import camera_info, CX, CY, FX, FY, HEIGHT, same_stamp, scene, WIDTH
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def node(synthetic_onnx, tmp_path_factory):
    """Yield the node under test, ONNX Runtime on the CPU, 3D on."""
    process = NodeProcess(tmp_path_factory.mktemp('node') / 'node.log', {
        'model_path': str(synthetic_onnx), 'device': 'cpu', 'enable_3d': True,
        'max_rate_hz': 0.0, 'diagnostic_period': 0.5})
    process.wait_for_log('out /affordance/active_action')
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope='module')
def client(node, ros_context):
    """Yield a client subscribed to every output, matched with the node."""
    graph_client = GraphClient(name='graph_test_client', context=ros_context)
    graph_client.wait_for_node(timeout_s=30.0, with_depth=True)
    yield graph_client
    graph_client.close()


@pytest.fixture(scope='module')
def dds_round_trip_s(client):
    """Measure a command -> node callback -> latched echo round trip (seconds, the median)."""
    samples = []
    for action in ('cut_with', 'hold', 'cut_with', 'hold'):
        started = time.monotonic()
        set_action(client, action)
        samples.append(time.monotonic() - started)
    return float(np.median(samples))


def head_start_s(round_trip_s: float) -> float:
    """Time to let one message reach the node's callbacks before the next is sent."""
    return max(0.1, 5.0 * round_trip_s)


@pytest.fixture(scope='module')
def expected_pipeline(synthetic_onnx):
    """Return the same model run in this process, for a known answer."""
    return FramePipeline(OnnxRuntimeBackend(str(synthetic_onnx), 'cpu').load())


def to_array(msg: Image) -> np.ndarray:
    """Decode an output message with the node's own decoder."""
    return image_msg_to_array(msg)[0]


def set_action(client: GraphClient, action: str) -> None:
    """Make ``action`` (a label, or '' for idle) the node's action; wait for its echo."""
    echoes = client.messages('active_action')
    if echoes and echoes[-1].data == action:
        return
    client.send_action(action)
    client.wait_for('active_action', lambda m: m.data == action, skip=len(echoes))


def no_action_count(client: GraphClient) -> int:
    """How many frames the node has dropped for want of an action so far."""
    return int(wait_for_diagnostics(client, lambda v: True).get('problem: no_action', 0))


def publish_and_wait(client: GraphClient, image, encoding='rgb8', topic='heatmap', **kwargs):
    header = client.publish_image(image, encoding, **kwargs)
    return header, client.wait_for(topic, same_stamp(header), timeout_s=20.0)


def test_node_without_an_action_idles_and_says_so(node, client):
    set_action(client, '')
    before = no_action_count(client)
    header = client.publish_image(scene(), 'rgb8')
    # The node counts the frame it dropped for want of an action: await that, not a timeout.
    values = wait_for_diagnostics(
        client, lambda v: int(v.get('problem: no_action', 0)) > before)
    assert values['action'] == 'idle'
    assert values['message'] == 'idle: no action set'
    assert not [m for m in client.messages('heatmap') if same_stamp(header)(m)]
    set_action(client, 'hold')
    publish_and_wait(client, scene(11))  # an action brings the outputs back


def test_node_outputs_carry_the_input_header_at_input_resolution(node, client,
                                                                 expected_pipeline):
    set_action(client, 'hold')
    image = scene(1)
    header, heatmap_msg = publish_and_wait(client, image)
    mask_msg = client.wait_for('grasp_mask', same_stamp(header))
    for msg in (heatmap_msg, mask_msg):
        assert (msg.height, msg.width) == (HEIGHT, WIDTH)
        assert msg.header.frame_id == 'camera_color_optical_frame'
    assert heatmap_msg.encoding == '32FC1' and mask_msg.encoding == 'mono8'
    heatmap, mask = to_array(heatmap_msg), to_array(mask_msg)
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
    assert set(np.unique(mask)) <= {0, 255} and mask.any()
    np.testing.assert_array_equal(mask, compute_grasp_mask(heatmap, 0.5, True))
    index = expected_pipeline.labels.index('hold')
    expected = expected_pipeline.run(image, index, OutputSettings()).heatmap
    np.testing.assert_allclose(heatmap, expected, atol=1e-5)


@pytest.mark.parametrize('encoding, convert', [
    ('bgr8', lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)),
    ('rgba8', lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)),
    ('bgra8', lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)),
])
def test_node_colour_encodings_give_the_rgb8_heatmap(node, client, encoding, convert):
    set_action(client, 'hold')
    image = scene(2)
    _, reference = publish_and_wait(client, image)
    _, converted = publish_and_wait(client, convert(image), encoding)
    np.testing.assert_allclose(to_array(converted), to_array(reference), atol=1e-6)


def test_node_mono8_gives_the_heatmap_of_the_grey_image_as_rgb(node, client, expected_pipeline):
    set_action(client, 'hold')
    grey = cv2.cvtColor(scene(3), cv2.COLOR_RGB2GRAY)
    _, heatmap = publish_and_wait(client, grey, 'mono8')
    assert (heatmap.height, heatmap.width) == (HEIGHT, WIDTH)
    index = expected_pipeline.labels.index('hold')
    grey_rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    expected = expected_pipeline.run(grey_rgb, index, OutputSettings()).heatmap
    np.testing.assert_allclose(to_array(heatmap), expected, atol=1e-5)
    colour = expected_pipeline.run(scene(3), index, OutputSettings()).heatmap
    assert np.abs(colour - expected).max() > 1e-3  # the grey input really changed the answer


def test_node_renders_the_overlay_for_a_subscriber(node, client):
    set_action(client, 'hold')
    header, overlay = publish_and_wait(client, scene(4), topic='overlay')
    assert overlay.encoding == 'bgr8' and (overlay.height, overlay.width) == (HEIGHT, WIDTH)


def test_node_latches_the_active_action_for_late_subscribers(node, client, make_client):
    set_action(client, 'hold')
    count = len(client.messages('active_action'))
    client.send_action('Cut With')  # spaces and case are normalised
    client.wait_for('active_action', lambda m: m.data == 'cut_with', skip=count)
    late = make_client(name='late_subscriber', outputs=('active_action',))
    assert late.wait_for('active_action', timeout_s=20.0).data == 'cut_with'


@pytest.mark.parametrize('command, reason', [
    ('fly', "unknown action 'fly'"), ('x' * 500, 'longer than the limit'),
    ('hold; rm -rf /', 'unknown action'),
])
def test_node_rejects_bad_actions_and_keeps_the_previous_one(node, client, command, reason):
    set_action(client, 'hold')
    before = int(wait_for_diagnostics(client, lambda v: v['action'] == 'hold').get(
        'problem: bad_action', 0))
    echoes = len(client.messages('active_action'))
    client.send_action(command)
    # This command's rejection is counted with its own reason (the log is throttled per kind,
    # so the diagnostics' last problem is the place to read it), and the action stays.
    wait_for_diagnostics(client, lambda v: int(v.get('problem: bad_action', 0)) > before
                         and v['action'] == 'hold' and reason in v.get('last problem', ''))
    assert len(client.messages('active_action')) == echoes  # nothing new was latched
    publish_and_wait(client, scene(5))  # still serving the previous action


def malformed_images():
    """Name -> an rgb8 message broken in one way each."""
    good = array_to_image_msg(scene(6), 'rgb8', Header(frame_id='camera_color_optical_frame'))
    cases = {}
    for name, change in {
        'unsupported encoding': {'encoding': 'yuv422'},
        'data shorter than height*step': {'data': array.array('B', bytes(100))},
        'step smaller than width*channels': {'step': WIDTH * 3 - 1},
        'zero-sized': {'height': 0, 'width': 0, 'step': 0, 'data': array.array('B')},
        'huge': {'height': 100000, 'width': 100000, 'step': 300000},
    }.items():
        msg = Image(header=good.header, height=good.height, width=good.width,
                    encoding=good.encoding, is_bigendian=good.is_bigendian, step=good.step,
                    data=good.data)
        for key, value in change.items():
            setattr(msg, key, value)
        cases[name] = msg
    return cases


@pytest.mark.parametrize('case', sorted(malformed_images()))
def test_node_drops_malformed_images_and_keeps_running(node, client, case):
    set_action(client, 'hold')
    before = int(wait_for_diagnostics(client, lambda v: True).get('problem: bad_image', 0))
    msg = malformed_images()[case]
    msg.header = client.make_header('camera_color_optical_frame')
    client.image_pub.publish(msg)
    wait_for_diagnostics(client, lambda v: int(v.get('problem: bad_image', 0)) > before)
    assert not [m for m in client.messages('heatmap') if same_stamp(msg.header)(m)]
    publish_and_wait(client, scene(7))  # the node still works
    assert node.process.poll() is None


def test_node_drops_stale_images(node, client):
    set_action(client, 'hold')
    before = int(wait_for_diagnostics(client, lambda v: True)['stale frames dropped'])
    stamp = client.get_clock().now().to_msg()
    stamp.sec -= 10
    header = client.publish_image(scene(8), stamp=stamp)
    wait_for_diagnostics(client, lambda v: int(v['stale frames dropped']) > before)
    assert not [m for m in client.messages('heatmap') if same_stamp(header)(m)]


def test_node_grasp_point_from_depth_has_the_known_answer(node, client, dds_round_trip_s):
    set_action(client, 'hold')
    head_start = head_start_s(dds_round_trip_s)
    before = wait_for_diagnostics(client, lambda v: True)
    header = client.make_header('camera_color_optical_frame')
    depth_mm = np.full((HEIGHT, WIDTH), 1500, np.uint16)
    client.depth_pub.publish(array_to_image_msg(depth_mm, '16UC1', header))
    time.sleep(head_start)  # depth is paired on arrival order; give it a head start
    client.publish_image(scene(9), stamp=header.stamp)
    wait_for_diagnostics(client, lambda v: int(v.get('problem: no_camera_info', 0))
                         > int(before.get('problem: no_camera_info', 0)))
    client.info_pub.publish(camera_info(header))
    time.sleep(head_start)
    for depth_msg in (array_to_image_msg(depth_mm, '16UC1', header),
                      array_to_image_msg(with_invalid_pixels(depth_mm), '32FC1', header)):
        header = client.make_header('camera_color_optical_frame')
        depth_msg.header = header
        client.depth_pub.publish(depth_msg)
        time.sleep(head_start)
        client.publish_image(scene(9), stamp=header.stamp)
        point = client.wait_for('grasp_point', same_stamp(header))
        mask = to_array(client.wait_for('grasp_mask', same_stamp(header)))
        rows, cols = np.nonzero(mask)
        assert point.header.frame_id == 'camera_color_optical_frame'
        assert point.point.z == pytest.approx(1.5, abs=1e-6)
        assert point.point.x == pytest.approx((cols.mean() - CX) * 1.5 / FX, abs=1e-6)
        assert point.point.y == pytest.approx((rows.mean() - CY) * 1.5 / FY, abs=1e-6)
        markers = client.wait_for('markers', lambda m: same_stamp(header)(m.markers[0]))
        assert [m.text for m in markers.markers][1] == 'hold'


def with_invalid_pixels(depth_mm: np.ndarray) -> np.ndarray:
    """32FC1 metres with NaN, +inf and -inf sprinkled in (REP-118 invalid values)."""
    metres = depth_mm.astype(np.float32) / 1000.0
    metres[::7, ::5] = np.nan
    metres[3::11, ::3] = np.inf
    metres[5::13, 1::4] = -np.inf
    return metres


def test_node_rejects_depth_of_another_size(node, client, dds_round_trip_s):
    set_action(client, 'hold')
    before = int(wait_for_diagnostics(client, lambda v: True).get('problem: bad_depth', 0))
    header = client.make_header('camera_color_optical_frame')
    client.depth_pub.publish(array_to_image_msg(np.full((120, 160), 1500, np.uint16), '16UC1',
                                                header))
    time.sleep(head_start_s(dds_round_trip_s))
    client.publish_image(scene(10), stamp=header.stamp)
    client.wait_for('heatmap', same_stamp(header))  # 2D outputs still published
    wait_for_diagnostics(client, lambda v: int(v.get('problem: bad_depth', 0)) > before)
    assert not [m for m in client.messages('grasp_point') if same_stamp(header)(m)]


def test_node_diagnostics_report_backend_rates_latency_and_drops(node, client):
    set_action(client, 'hold')
    for seed in range(5):
        client.publish_image(scene(seed))
        time.sleep(0.05)
    values = wait_for_diagnostics(client, lambda v: float(v['output rate (Hz)']) > 0
                                  and float(v.get('inference mean (ms)', 0)) > 0)
    assert values['backend'] == 'onnxruntime on cpu (fp32)'
    assert values['state'] == 'active' and values['action'] == 'hold'
    assert float(values['input rate (Hz)']) > 0.0
    stages = ('conversion', 'preprocess', 'inference', 'postprocess', 'publish')
    for stage in stages:  # every stage did work for the frames of the period
        assert float(values[f'{stage} max (ms)']) >= float(values[f'{stage} mean (ms)']) > 0.0
    # Every published frame's delay from its stamp includes its own stages (same frames).
    assert float(values['delay from stamp mean (ms)']) >= sum(
        float(values[f'{stage} mean (ms)']) for stage in stages) - 0.5
    assert int(values['frames dropped (newer frame arrived)']) <= int(values['images received'])


def test_node_empty_action_command_means_idle(node, client):
    set_action(client, 'hold')
    echoes = len(client.messages('active_action'))
    client.send_action('')
    assert client.wait_for('active_action', skip=echoes).data == ''
    wait_for_diagnostics(client, lambda v: v['action'] == 'idle')
    before = no_action_count(client)
    header = client.publish_image(scene(11))
    wait_for_diagnostics(client, lambda v: int(v.get('problem: no_action', 0)) > before)
    assert not [m for m in client.messages('heatmap') if same_stamp(header)(m)]


def test_node_subscribes_to_the_topics_the_launch_file_remaps(node, client):
    """launch/node.launch.py remaps image, camera_info, depth and action: they must exist."""
    subscribed = {name for name, _ in client.get_subscriber_names_and_types_by_node(
        'affordance_grounding', '/affordance')}
    assert {'/affordance/image', '/affordance/camera_info', '/affordance/depth',
            '/affordance/action'} <= subscribed
    published = {name for name, _ in client.get_publisher_names_and_types_by_node(
        'affordance_grounding', '/affordance')}
    assert {'/affordance/heatmap', '/affordance/grasp_mask', '/affordance/overlay',
            '/affordance/grasp_point', '/affordance/markers', '/affordance/active_action',
            '/diagnostics'} <= published
