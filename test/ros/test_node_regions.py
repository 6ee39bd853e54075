"""``roi_source`` over real DDS: the roi mode end to end, the detections mode's configure.

One node with ``roi_source: roi`` serves the roi tests in order: the whole frame before the
first ROI, a region pasted back, bad boxes skipped and counted on /diagnostics while the node
goes on. The detections mode needs vision_msgs: without it configure fails with one line that
names the package; with it, a live test pairs detections with images.
"""

import importlib.util
import time

from affordance_grounding.perception.image_codecs import image_msg_to_array
from harness.graph_client import GraphClient, wait_for_diagnostics
from harness.node_process import serve_node
from harness.scene_frames import scene
import numpy as np
import pytest
from sensor_msgs.msg import RegionOfInterest

pytestmark = pytest.mark.ros

HAS_VISION_MSGS = importlib.util.find_spec('vision_msgs') is not None
SIZE = (240, 320)  # (height, width) of harness.scene_frames.scene


@pytest.fixture(scope='module')
def roi_node(synthetic_onnx, tmp_path_factory):
    """Yield a node in roi mode, ONNX Runtime on the CPU, acting on 'hold'."""
    yield from serve_node(tmp_path_factory.mktemp('roi') / 'node.log', {
        'model_path': str(synthetic_onnx), 'device': 'cpu', 'roi_source': 'roi',
        'roi_margin': 0.0, 'default_action': 'hold', 'max_rate_hz': 0.0,
        'max_image_age_s': 0.0, 'diagnostic_period': 0.5})


@pytest.fixture(scope='module')
def client(roi_node, ros_context):
    """Yield a client with an ROI publisher, matched with the node."""
    from affordance_grounding.ros import qos

    graph = GraphClient(name='roi_client', context=ros_context,
                        outputs=('heatmap', '/diagnostics'))
    graph.roi_pub = graph.create_publisher(RegionOfInterest, 'roi', qos.COMMANDS)
    graph.wait_for_node(timeout_s=60.0)
    graph.wait_until(lambda: graph.roi_pub.get_subscription_count() > 0, 30.0, 'the roi input')
    yield graph
    graph.close()


def heatmap_for(client: GraphClient, header) -> np.ndarray:
    """Wait for the heatmap with ``header``'s stamp and return it as an array."""
    msg = client.wait_for('heatmap', lambda m: m.header.stamp == header.stamp, timeout_s=60.0)
    return image_msg_to_array(msg)[0]


def send_roi(client: GraphClient, x, y, width, height) -> None:
    """Publish an ROI and give DDS a moment to deliver it before the next image."""
    client.roi_pub.publish(RegionOfInterest(x_offset=x, y_offset=y, width=width,
                                            height=height))
    time.sleep(0.5)  # the ROI is state, not a stream: no message confirms its arrival


def test_roi_mode_runs_the_whole_frame_before_the_first_roi(client):
    heatmap = heatmap_for(client, client.publish_image(scene()))
    assert heatmap.shape == SIZE and heatmap.max() > 0.0
    values = wait_for_diagnostics(client, lambda v: 'problem: no_roi_yet' in v, 30.0)
    assert 'no ROI has arrived on roi yet' in values['last problem']


def test_roi_mode_pastes_the_region_back_and_zeroes_the_rest(client):
    send_roi(client, 16, 8, 40, 40)
    heatmap = heatmap_for(client, client.publish_image(scene()))
    assert heatmap.shape == SIZE and heatmap[8:48, 16:56].max() > 0.0
    assert heatmap[:, 64:].max() == 0.0 and heatmap[60:, :].max() == 0.0
    # the ROI stays in force for the next frame
    again = heatmap_for(client, client.publish_image(scene()))
    assert again[:, 64:].max() == 0.0


@pytest.mark.parametrize('box', [(2 ** 32 - 8, 8, 40, 40),      # x = -8 wrapped into uint32
                                 (500, 400, 40, 40),            # wholly outside the image
                                 (8, 8, 2 ** 32 - 1, 2 ** 32 - 1)])  # huge
def test_roi_mode_skips_and_counts_bad_boxes_and_goes_on(client, box):
    before = wait_for_diagnostics(client, lambda v: True, 30.0)
    skipped_before = int(before.get('problem: bad_roi', '0'))
    send_roi(client, *box)
    skipped = client.publish_image(scene())
    values = wait_for_diagnostics(
        client, lambda v: int(v.get('problem: bad_roi', '0')) > skipped_before, 30.0)
    assert 'frame skipped: ROI' in values['last problem']
    assert not [m for m in client.messages('heatmap') if m.header.stamp == skipped.stamp]
    send_roi(client, 0, 0, 0, 0)  # width 0: the whole frame again
    assert heatmap_for(client, client.publish_image(scene())).max() > 0.0


def test_node_and_bag_tool_give_the_same_heatmap_for_the_same_frame_and_box(
        client, synthetic_onnx, tmp_path):
    """One frame job behind both adapters: the node over DDS, affordance_bag offline."""
    from affordance_grounding.bag.processing import BagJob, run_bag
    from affordance_grounding.perception.regions import Region
    from affordance_grounding.perception.settings import RegionSettings
    from bench.bag_recording import read_topic, RecordingSpec, write_recording

    box = (150, 60, 100, 120)
    rgbs = write_recording(tmp_path / 'recording', RecordingSpec(frames=1, size=SIZE[::-1]))
    send_roi(client, *box)
    node_heatmap = heatmap_for(client, client.publish_image(rgbs[0]))
    run_bag(BagJob(tmp_path / 'recording', tmp_path / 'result', str(synthetic_onnx),
                   device='cpu', progress=False, roi=Region(*box),
                   regions=RegionSettings(margin=0.0)), log=lambda line: None)
    (_, bag_msg), = read_topic(tmp_path / 'result', '/affordance/heatmap')
    bag_heatmap = image_msg_to_array(bag_msg)[0]
    assert node_heatmap[60:180, 150:250].max() > 0.0 and node_heatmap[:, :140].max() == 0.0
    np.testing.assert_allclose(bag_heatmap, node_heatmap, atol=1e-6, rtol=0)


@pytest.mark.skipif(HAS_VISION_MSGS, reason='vision_msgs is installed: configure succeeds')
def test_detections_mode_without_vision_msgs_fails_configure_in_one_line(
        synthetic_onnx, start_node):
    node = start_node(model_path=str(synthetic_onnx), device='cpu', roi_source='detections')
    log = node.wait_for_log('stays unconfigured', timeout_s=120.0)
    lines = [line for line in log.splitlines() if 'needs vision_msgs' in line]
    assert len(lines) == 1, log
    assert '-vision-msgs' in lines[0] and 'configure failed' in lines[0]
    assert 'Traceback' not in log
    assert node.process.poll() is None  # alive, unconfigured


@pytest.mark.skipif(not HAS_VISION_MSGS, reason='vision_msgs is not installed '
                    '(ros-<distro>-vision-msgs); the detections mode cannot run here')
def test_detections_mode_pairs_boxes_with_images_live(synthetic_onnx, start_node, make_client):
    from affordance_grounding.ros import qos
    from vision_msgs.msg import Detection2D, Detection2DArray

    start_node(model_path=str(synthetic_onnx), device='cpu', roi_source='detections',
               default_action='hold', max_rate_hz=0.0, max_image_age_s=0.0)
    client = make_client(outputs=('heatmap',))
    received = []
    client.create_subscription(Detection2DArray, 'affordance_detections', received.append,
                               qos.RELIABLE)
    boxes_pub = client.create_publisher(Detection2DArray, 'detections', qos.RELIABLE)
    client.wait_for_node(timeout_s=60.0)
    client.wait_until(lambda: boxes_pub.get_subscription_count() > 0, 30.0, 'detections')
    header = client.publish_image(scene())
    detection = Detection2D(header=header, id='cup')
    detection.bbox.center.position.x, detection.bbox.center.position.y = 40.0, 30.0
    detection.bbox.size_x = detection.bbox.size_y = 30.0
    boxes_pub.publish(Detection2DArray(header=header, detections=[detection]))
    heatmap = heatmap_for(client, header)
    assert heatmap[:, 70:].max() == 0.0
    client.wait_until(lambda: bool(received), 30.0, 'affordance_detections')
    output = received[0]
    assert output.header.stamp == header.stamp and output.detections[0].id == 'cup'
    assert output.detections[0].results[0].hypothesis.class_id == 'hold'
