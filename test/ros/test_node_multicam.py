"""One node, two cameras (``cameras: [head, wrist]``), over real DDS.

One node process serves the tests of this module in order: per-camera topics and headers,
the single-camera known answer, one batched inference, a silent camera that stalls nothing,
a camera's own action, per-camera diagnostics.
"""

import time
from typing import Dict, Optional

from affordance_grounding.inference.backends import OnnxRuntimeBackend
from affordance_grounding.perception.frame_pipeline import FramePipeline
from affordance_grounding.perception.image_codecs import image_msg_to_array
from affordance_grounding.perception.settings import OutputSettings
from affordance_grounding.ros.conversions import array_to_image_msg
from harness.graph_client import GraphClient
from harness.node_process import NodeProcess
from harness.scene_frames import camera_info, same_stamp, scene
import numpy as np
import pytest

pytestmark = pytest.mark.ros

CAMERAS = ('head', 'wrist')
STATUS_PREFIX = 'affordance_grounding: camera '


@pytest.fixture(scope='module')
def node(synthetic_onnx, tmp_path_factory):
    """Yield a two-camera node with 3D, ONNX Runtime on the CPU, acting on 'hold'."""
    process = NodeProcess(tmp_path_factory.mktemp('multicam') / 'node.log', {
        'model_path': str(synthetic_onnx), 'device': 'cpu', 'cameras': list(CAMERAS),
        'enable_3d': True,
        'default_action': 'hold', 'max_rate_hz': 0.0, 'max_image_age_s': 0.0,
        'diagnostic_period': 0.5})
    process.wait_for_log('out /affordance/active_action')
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope='module')
def cameras(node, ros_context) -> Dict[str, GraphClient]:
    """Yield one client per camera in ``/affordance/<camera>``, matched with the node."""
    clients = {camera: GraphClient(namespace=f'affordance/{camera}', name=f'{camera}_client',
                                   context=ros_context,
                                   outputs=('heatmap', 'grasp_mask', 'active_action',
                                            'grasp_point'))
               for camera in CAMERAS}
    for client in clients.values():
        client.wait_for_node(timeout_s=30.0, with_depth=True)
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope='module')
def shared(node, ros_context):
    """Yield a client in ``/affordance``: the shared action and /diagnostics."""
    client = GraphClient(name='shared_client', context=ros_context,
                         outputs=('active_action', '/diagnostics'))
    client.wait_until(lambda: client.action_pub.get_subscription_count() > 0, 30.0,
                      'the shared action subscription')
    yield client
    client.close()


@pytest.fixture(scope='module')
def expected_pipeline(synthetic_onnx):
    """Return the same model run in this process (batch of one), for a known answer."""
    return FramePipeline(OnnxRuntimeBackend(str(synthetic_onnx), 'cpu').load())


def camera_status(client: GraphClient, camera: str) -> Optional[Dict[str, str]]:
    """Key/values (plus ``message``) of the newest diagnostics status of ``camera``."""
    for array in reversed(client.messages('/diagnostics')):
        for status in array.status:
            if status.name == STATUS_PREFIX + camera:
                return dict({item.key: item.value for item in status.values},
                            message=status.message)
    return None


def wait_for_camera_status(client, camera, predicate, timeout_s=20.0) -> Dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        values = camera_status(client, camera)
        if values is not None and predicate(values):
            return values
        if time.monotonic() > deadline:
            raise TimeoutError(f'camera {camera} diagnostics never matched; last: {values}')
        time.sleep(0.1)


def test_each_camera_gets_its_own_outputs_header_and_the_known_answer(node, cameras,
                                                                      expected_pipeline):
    for line in ('in  /affordance/head/image', 'in  /affordance/wrist/action',
                 'out /affordance/wrist/heatmap', 'in  /affordance/action'):
        assert line in node.log()
    images = {'head': scene(2), 'wrist': scene(3)}
    headers = {camera: cameras[camera].publish_image(images[camera],
                                                     frame_id=f'{camera}_optical_frame')
               for camera in CAMERAS}
    hold = expected_pipeline.labels.index('hold')
    for camera, other in (('head', 'wrist'), ('wrist', 'head')):
        heatmap_msg = cameras[camera].wait_for('heatmap', same_stamp(headers[camera]))
        mask_msg = cameras[camera].wait_for('grasp_mask', same_stamp(headers[camera]))
        assert heatmap_msg.header.frame_id == mask_msg.header.frame_id == f'{camera}_optical_frame'
        expected = expected_pipeline.run(images[camera], hold, OutputSettings()).heatmap
        np.testing.assert_allclose(image_msg_to_array(heatmap_msg)[0], expected, atol=1e-5)
        # nothing of this camera's frame ended up on the other camera's topics
        assert not [m for m in cameras[other].messages('heatmap')
                    if same_stamp(headers[camera])(m)]


def test_fresh_frames_of_both_cameras_run_as_one_inference(node, cameras, shared):
    for _ in range(30):  # both cameras at ~30 Hz, each pair published back to back
        for camera in CAMERAS:
            cameras[camera].publish_image(scene(4))
        time.sleep(1 / 30)
    time.sleep(0.5)
    # the node's own status reports how many frames each inference ran
    found = []

    def batched() -> bool:
        for array in shared.messages('/diagnostics'):
            for status in array.status:
                values = {item.key: item.value for item in status.values}
                if status.name == 'affordance_grounding: inference' and values.get(
                        'frames per inference max') == '2':
                    found.append(values)
        return bool(found)
    shared.wait_until(batched, 10.0, 'an inference of both cameras')
    assert float(found[-1]['frames per inference mean']) >= 1.0


def test_a_silent_camera_does_not_stall_the_other(node, cameras, shared):
    wrist = cameras['wrist']
    wrist.clear()
    start, sent = time.monotonic(), 0
    while time.monotonic() - start < 3.0:  # head is silent all the while
        wrist.publish_image(scene(5))
        sent += 1
        time.sleep(max(0.0, start + sent / 10.0 - time.monotonic()))
    time.sleep(1.0)
    assert len(wrist.messages('heatmap')) >= 0.8 * sent
    # wrist first: its rate window (5 s) still holds the stream
    values = wait_for_camera_status(shared, 'wrist', lambda v: float(v['output rate (Hz)']) > 5)
    assert values['action'] == 'hold' and values['own action'] == 'no'
    head = wait_for_camera_status(shared, 'head', lambda v: v['input rate (Hz)'] == '0.00',
                                  timeout_s=15.0)
    assert head['message'] == 'no images received'


def test_a_camera_own_action_overrides_the_shared_one(node, cameras, shared,
                                                      expected_pipeline):
    head, wrist = cameras['head'], cameras['wrist']
    head.send_action('pour')
    head.wait_for('active_action', lambda m: m.data.startswith('pour'))
    image = scene(6)
    headers = {'head': head.publish_image(image), 'wrist': wrist.publish_image(image)}
    maps = {camera: image_msg_to_array(
                cameras[camera].wait_for('heatmap', same_stamp(headers[camera])))[0]
            for camera in CAMERAS}
    for camera, action in (('head', 'pour'), ('wrist', 'hold')):
        index = expected_pipeline.labels.index(action)
        np.testing.assert_allclose(
            maps[camera], expected_pipeline.run(image, index, OutputSettings()).heatmap,
            atol=1e-5)
    assert not np.allclose(maps['head'], maps['wrist'])
    values = wait_for_camera_status(shared, 'head', lambda v: v['own action'] == 'yes')
    assert values['action'] == 'pour'
    # the shared action changes the cameras without an own action only
    shared.send_action('cut with')
    wrist.wait_for('active_action', lambda m: m.data.startswith('cut_with'))
    wait_for_camera_status(shared, 'wrist', lambda v: v['action'] == 'cut_with')
    assert camera_status(shared, 'head')['action'] == 'pour'
    # an empty text on <camera>/action: the camera follows the shared action again
    head.send_action('')
    head.wait_for('active_action', lambda m: m.data.startswith('cut_with'))
    shared.send_action('hold')
    wait_for_camera_status(shared, 'head', lambda v: v['action'] == 'hold')


def test_per_camera_diagnostics_count_rate_delay_and_drops(node, cameras, shared):
    for _ in range(250):  # faster than inference: the newest frame wins, the rest are dropped
        cameras['head'].publish_image(scene(7))
        time.sleep(0.004)  # paced: a burst would be lost in transport (best-effort input)
    time.sleep(1.5)
    values = wait_for_camera_status(shared, 'head',
                                    lambda v: int(v['frames dropped (newer frame arrived)']) > 0)
    assert values['camera'] == 'head'
    received, published = int(values['images received']), int(values['frames published'])
    assert 0 < published < received
    # A period with frames gives the camera's delay; one without says so instead of a 0.
    delays = {item.value for array in shared.messages('/diagnostics') for status in array.status
              if status.name == STATUS_PREFIX + 'head' for item in status.values
              if item.key == 'delay from stamp max (ms)'}
    assert any(delay != 'none: no frames this period' and float(delay) > 0 for delay in delays)
    # counted per camera: the cameras add up to the node's own figures (no traffic now)
    statuses = {status.name: {item.key: item.value for item in status.values}
                for status in shared.messages('/diagnostics')[-1].status}
    whole = statuses['affordance_grounding: inference']
    for key in ('images received', 'frames published', 'frames dropped (newer frame arrived)'):
        assert int(whole[key]) == sum(int(statuses[STATUS_PREFIX + camera][key])
                                      for camera in CAMERAS), key


def test_each_camera_pairs_its_own_depth_and_camera_info(node, cameras):
    depth_m = {'head': 1.5, 'wrist': 0.8}
    headers = {}
    for camera, client in cameras.items():
        header = client.make_header(f'{camera}_optical_frame')
        client.info_pub.publish(camera_info(header))
        depth_mm = np.full((240, 320), int(depth_m[camera] * 1000), np.uint16)
        client.depth_pub.publish(array_to_image_msg(depth_mm, '16UC1', header))
        headers[camera] = header
    time.sleep(0.3)  # depth and camera_info first: they are paired on arrival
    for camera, client in cameras.items():
        client.publish_image(scene(8), frame_id=f'{camera}_optical_frame',
                             stamp=headers[camera].stamp)
    for camera, client in cameras.items():
        point = client.wait_for('grasp_point', same_stamp(headers[camera]))
        assert point.header.frame_id == f'{camera}_optical_frame'
        assert point.point.z == pytest.approx(depth_m[camera], abs=1e-6)
