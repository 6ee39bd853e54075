"""The node over real DDS: region cloud and grasp pose with the input header; action phrases.

The node runs in its own process (synthetic-pretrained model with its CLIP text tower next to
it, ONNX Runtime CPU, 3D on); the depth is a ray-cast tilted plane, so the pose has a known
answer. Every test sets the action it needs.
"""

import shutil
import time

from affordance_grounding.inference.text_encoder import load_label_matcher, text_model_path
from affordance_grounding.ros.conversions import array_to_image_msg
from affordance_grounding.ros.messages import CLOUD_DTYPE
import cv2
from harness.graph_client import GraphClient, wait_for_diagnostics
from harness.node_process import NodeProcess
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, PointField

pytestmark = pytest.mark.ros

HEIGHT, WIDTH = 240, 320
FX, FY, CX, CY = 250.0, 240.0, 161.5, 118.5
PLANE_NORMAL = np.array([0.3, -0.2, -1.0]) / np.linalg.norm([0.3, -0.2, -1.0])
PLANE_POINT = np.array([0.0, 0.0, 0.8])
FRAME = 'camera_color_optical_frame'


@pytest.fixture(scope='module')
def model_with_text_tower(synthetic_onnx, tmp_path_factory):
    """Copy the synthetic model and export ``<model>.text.onnx`` next to it."""
    from training.export import export_text_tower

    model = tmp_path_factory.mktemp('model_with_text') / 'synthetic.onnx'
    shutil.copyfile(synthetic_onnx, model)
    export_text_tower('config/model_synthetic.yaml', str(text_model_path(str(model))))
    return model


@pytest.fixture(scope='module')
def node(model_with_text_tower, tmp_path_factory):
    """Yield the node under test with 3D on; every phrase passes the text threshold."""
    process = NodeProcess(tmp_path_factory.mktemp('node3d') / 'node.log', {
        'model_path': str(model_with_text_tower), 'device': 'cpu', 'enable_3d': True,
        'max_rate_hz': 0.0, 'diagnostic_period': 0.5, 'action_min_text_margin': -2.0})
    process.wait_for_log('out /affordance/grasp_pose')
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope='module')
def client(node, ros_context):
    """Yield a client matched with the node that has already sent camera_info."""
    graph_client = GraphClient(name='grasp3d_test_client', context=ros_context)
    graph_client.wait_for_node(timeout_s=30.0, with_depth=True)
    info = CameraInfo(header=graph_client.make_header(FRAME), height=HEIGHT, width=WIDTH,
                      distortion_model='plumb_bob')
    info.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    graph_client.info_pub.publish(info)
    yield graph_client
    graph_client.close()


def scene() -> np.ndarray:
    """Return a (240, 320, 3) uint8 RGB image with a large bright disc (a ``hold`` region)."""
    rng = np.random.default_rng(1)
    image = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (WIDTH, HEIGHT),
                       interpolation=cv2.INTER_CUBIC)
    cv2.circle(image, (200, 120), 50, (240, 200, 30), -1)
    return image


def plane_depth() -> np.ndarray:
    """(240, 320) float32 metres of the tilted plane (ray cast through the pinhole model)."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rays = np.stack([(u - CX) / FX, (v - CY) / FY, np.ones_like(u)], axis=-1)
    return ((PLANE_NORMAL @ PLANE_POINT) / (rays @ PLANE_NORMAL)).astype(np.float32)


def same_stamp(header):
    return lambda msg: (msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        header.stamp.sec, header.stamp.nanosec)


def use_action(client, text: str, description: str, timeout_s: float = 20.0) -> None:
    """Send an action command; wait until the newest active_action is what it understood."""
    client.send_action(text)
    deadline = time.monotonic() + timeout_s
    while True:
        latest = client.messages('active_action')[-1:]
        if latest and latest[0].data == description:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f'active_action never became {description!r}: {latest}')
        time.sleep(0.05)


def send_frame(client, depth: np.ndarray):
    """Publish depth, wait until the node has it (camera_info too), then the colour image."""
    header = client.make_header(FRAME)
    client.depth_pub.publish(array_to_image_msg(depth, '32FC1', header))
    # Depth is buffered on arrival and paired when the colour frame is processed; depth and
    # colour travel on different topics, so give depth a head start (as a camera driver does
    # by publishing both from one capture).
    time.sleep(0.2)
    client.publish_image(scene(), stamp=header.stamp)
    return header


def decode_cloud(msg) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), CLOUD_DTYPE, count=msg.width)


def test_cloud_and_pose_arrive_with_the_input_header_and_the_known_normal(node, client):
    use_action(client, 'hold', 'hold')
    header = send_frame(client, plane_depth())
    pose = client.wait_for('grasp_pose', same_stamp(header), timeout_s=30.0)
    cloud = client.wait_for('affordance_cloud', same_stamp(header))
    heatmap_msg = client.wait_for('heatmap', same_stamp(header))
    mask_msg = client.wait_for('grasp_mask', same_stamp(header))
    for msg in (pose, cloud):
        assert msg.header.frame_id == FRAME
    # Cloud layout: x, y, z, intensity float32, dense, one point per mask pixel.
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [
        ('x', 0, PointField.FLOAT32), ('y', 4, PointField.FLOAT32),
        ('z', 8, PointField.FLOAT32), ('intensity', 12, PointField.FLOAT32)]
    assert cloud.height == 1 and cloud.point_step == 16 and cloud.is_dense
    points = decode_cloud(cloud)
    mask = np.frombuffer(bytes(mask_msg.data), np.uint8).reshape(HEIGHT, WIDTH)
    heatmap = np.frombuffer(bytes(heatmap_msg.data), np.float32).reshape(HEIGHT, WIDTH)
    rows, cols = np.nonzero(mask)
    assert len(points) == len(rows) > 100
    np.testing.assert_allclose(points['intensity'], heatmap[rows, cols])
    xyz = np.stack([points['x'], points['y'], points['z']], axis=1).astype(np.float64)
    assert np.isfinite(xyz).all()
    np.testing.assert_allclose(xyz @ PLANE_NORMAL, PLANE_NORMAL @ PLANE_POINT, atol=1e-4)
    # Pose: z approaches the plane (negative of the camera-facing normal), on the plane.
    q = pose.pose.orientation
    x, y, z, w = q.x, q.y, q.z, q.w
    approach = np.array([2 * (x * z + y * w), 2 * (y * z - x * w), 1 - 2 * (x * x + y * y)])
    angle = np.degrees(np.arccos(np.clip(approach @ -PLANE_NORMAL, -1.0, 1.0)))
    assert angle < 2.0
    position = np.array([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z])
    assert abs((position - PLANE_POINT) @ PLANE_NORMAL) < 1e-3
    markers = client.wait_for('markers', lambda m: same_stamp(header)(m.markers[0]))
    assert [m.id for m in markers.markers] == [0, 1, 2, 3]  # point, label, arrow, patch


def test_all_nan_depth_publishes_no_pose_and_counts_why(node, client):
    use_action(client, 'hold', 'hold')
    before = wait_for_diagnostics(client, lambda v: True)
    header = send_frame(client, np.full((HEIGHT, WIDTH), np.nan, np.float32))
    client.wait_for('heatmap', same_stamp(header), timeout_s=30.0)
    values = wait_for_diagnostics(
        client, lambda v: int(v.get('problem: grasp_pose_too_few_points', 0))
        > int(before.get('problem: grasp_pose_too_few_points', 0)))
    assert int(values.get('problem: no_grasp_point', 0)) > int(
        before.get('problem: no_grasp_point', 0))
    # The frame was fully processed before its problems were counted: nothing came for it.
    for topic in ('grasp_pose', 'affordance_cloud', 'grasp_point'):
        assert not [m for m in client.messages(topic) if same_stamp(header)(m)], topic


def test_diagnostics_split_the_3d_stages(node, client):
    use_action(client, 'hold', 'hold')
    send_frame(client, plane_depth())
    values = wait_for_diagnostics(client, lambda v: 'grasp_pose mean (ms)' in v)
    for stage in ('depth', 'grasp_point', 'grasp_pose', 'publish_3d'):
        assert float(values[f'{stage} max (ms)']) > 0.0, stage


def test_planner_verbs_are_understood_and_reported(node, client):
    use_action(client, 'hold', 'hold')
    use_action(client, 'Grab', 'Grab -> hold (synonym)')
    wait_for_diagnostics(client, lambda v: v['action'] == 'hold')
    use_action(client, 'slice', 'slice -> cut_with (synonym)')
    wait_for_diagnostics(client, lambda v: v['action'] == 'cut_with')
    assert 'action: slice -> cut_with (synonym)' in node.log()


def test_other_phrases_map_by_clip_text_similarity(node, client, model_with_text_tower):
    from affordance_grounding.vocabulary import AGD20K_SEEN

    matcher = load_label_matcher(str(model_with_text_tower), AGD20K_SEEN)
    label, margin, _ = matcher('slice it')  # the same text tower, in this process
    use_action(client, 'hold', 'hold')
    use_action(client, 'slice it', f'slice it -> {label} (text similarity, margin {margin:.2f})')
    wait_for_diagnostics(client, lambda v: v['action'] == label)
    assert 'CLIP text similarity' in node.log()
