"""Real-robot traffic over DDS: recorded stamps, a looped bag's clock, lossy large frames, Ctrl-C.

Each test starts its own node process (synthetic-pretrained backbones, ONNX Runtime CPU) and
sets up everything it needs.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from affordance_grounding.ros.transport import PROFILE_ENV_VARS
from builtin_interfaces.msg import Time
from harness.graph_client import latest_diagnostics, wait_for_diagnostics
import numpy as np
import pytest
from rosgraph_msgs.msg import Clock

pytestmark = pytest.mark.ros

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRAME = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)


def stamp(seconds: float) -> Time:
    """builtin_interfaces/Time of ``seconds``."""
    return Time(sec=int(seconds), nanosec=int((seconds % 1) * 1e9))


def publish_until_heatmap(client, make_stamp=lambda: None, timeout_s: float = 30.0):
    """Publish frames until one comes back as a heatmap; return that frame's header.

    A best-effort frame may be lost while discovery completes, hence the retries.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        header = client.publish_image(FRAME, stamp=make_stamp())
        try:
            client.wait_for('heatmap', lambda m: m.header.stamp == header.stamp, 1.0)
            return header
        except TimeoutError:
            continue
    raise AssertionError(f'no frame came back as a heatmap within {timeout_s} s')


def test_recorded_stamps_are_explained_once(synthetic_onnx, start_node, make_client):
    """A bag played without use_sim_time: frames an hour old, said once, on /diagnostics too."""
    node = start_node(model_path=str(synthetic_onnx), device='cpu', default_action='hold',
                      diagnostic_period=0.5)
    client = make_client(outputs=('heatmap', '/diagnostics'))
    client.wait_for_node(timeout_s=60.0)
    wait_for_diagnostics(client, lambda v: v['state'] == 'active')
    hour_ago = time.time() - 3600.0
    for index in range(8):
        client.publish_image(FRAME, stamp=stamp(hour_ago + index * 0.1))
        time.sleep(0.1)
    # Every image is accounted for: dropped as stale, or replaced by a newer one before the
    # worker took it (latest-wins; on a loaded machine the worker can be late by a frame).
    values = wait_for_diagnostics(client, lambda v: int(v['stale frames dropped']) + int(
        v['frames dropped (newer frame arrived)']) >= 8 and int(v['stale frames dropped']) >= 1)
    assert 'frames are 3600 s old' in values['message'], values
    assert 'use_sim_time:=true' in values['message'] and values['level'] == '1'
    log = node.wait_for_log('[recorded_time]')
    assert log.count('[recorded_time]') == 1, log
    assert 'frames are 3600 s old' in log and 'every frame is dropped' in log
    assert '[stale_image]' not in log  # the clear message replaces the generic one
    assert not client.messages('heatmap')

    publish_until_heatmap(client)  # live frames again: processed, warning cleared
    values = wait_for_diagnostics(client, lambda v: 'old' not in v['message'])
    assert float(values['newest frame age (s)']) < 5.0


def test_diagnostics_after_the_images_stop(synthetic_onnx, start_node, make_client):
    """Ages grow, rates fall to 0 and an empty period says so once the stream has ended."""
    start_node(model_path=str(synthetic_onnx), device='cpu', default_action='hold',
               diagnostic_period=0.5)
    client = make_client(outputs=('heatmap', '/diagnostics'))
    client.wait_for_node(timeout_s=60.0)
    for _ in range(5):
        publish_until_heatmap(client)
    streaming = wait_for_diagnostics(client, lambda v: float(v['input rate (Hz)']) > 0)
    # The rate meters' window is 5 s: by then every figure must say that nothing comes.
    stopped = wait_for_diagnostics(
        client, lambda v: v['input rate (Hz)'] == v['output rate (Hz)'] == '0.00'
        and float(v['newest frame age (s)']) > 5.0, timeout_s=30.0)
    assert float(stopped['newest frame age (s)']) > float(streaming['newest frame age (s)'])
    assert stopped['delay from stamp mean (ms)'] == 'none: no frames this period'


def test_clock_jumping_back_does_not_wedge_the_node(synthetic_onnx, start_node, make_client):
    """use_sim_time with a looped bag: /clock goes from 1000 s back to 100 s."""
    start_node(model_path=str(synthetic_onnx), device='cpu', default_action='hold',
               use_sim_time=True, diagnostic_period=0.5)
    client = make_client(outputs=('heatmap', '/diagnostics'))
    clock_pub = client.create_publisher(Clock, '/clock', 10)
    sim_time = [1000.0]
    running = threading.Event()
    running.set()

    def tick() -> None:  # a bag player's /clock at 100 Hz
        while running.is_set():
            clock_pub.publish(Clock(clock=stamp(sim_time[0])))
            sim_time[0] += 0.01
            time.sleep(0.01)
    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        client.wait_for_node(timeout_s=60.0)
        wait_for_diagnostics(client, lambda v: v['state'] == 'active')

        def sim_stamp():
            return stamp(sim_time[0])
        assert 1000 <= publish_until_heatmap(client, sim_stamp).stamp.sec < 1100
        sim_time[0] = 100.0  # the bag loops
        diagnostics_before = len(client.messages('/diagnostics'))
        assert 100 <= publish_until_heatmap(client, sim_stamp).stamp.sec < 200
        assert 100 <= publish_until_heatmap(client, sim_stamp).stamp.sec < 200
        deadline = time.monotonic() + 10.0
        while len(client.messages('/diagnostics')) < diagnostics_before + 3:
            assert time.monotonic() < deadline, 'diagnostics stopped after the clock jump'
            time.sleep(0.05)
        assert latest_diagnostics(client)['state'] == 'active'
    finally:
        running.clear()
        thread.join()


def test_diagnostics_keep_coming_under_sim_time_without_a_clock(synthetic_onnx, start_node,
                                                                make_client):
    """use_sim_time before the bag plays (no /clock yet): /diagnostics still report."""
    start_node(model_path=str(synthetic_onnx), device='cpu', use_sim_time=True,
               diagnostic_period=0.5)
    client = make_client(outputs=('/diagnostics',))
    values = wait_for_diagnostics(client, lambda v: v['state'] == 'active', timeout_s=60.0)
    assert values['message'] == 'idle: no action set'


def test_sigint_stops_the_worker_before_the_context(synthetic_onnx, start_node, make_client):
    """Ctrl-C while frames stream: a clean exit, no publish on a dead context."""
    node = start_node(model_path=str(synthetic_onnx), device='cpu', default_action='hold',
                      max_rate_hz=0.0, max_image_age_s=0.0)
    client = make_client(outputs=('heatmap',))
    client.wait_for_node(timeout_s=60.0)
    publish_until_heatmap(client)
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            client.publish_image(FRAME)
            time.sleep(0.005)
    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        assert node.stop(timeout_s=20.0) == 0, node.log()
    finally:
        stop.set()
        thread.join()
    log = node.log()
    assert 'context is invalid' not in log and 'processing_error' not in log, log
    assert 'Traceback' not in log, log


def ignore_sigint() -> None:
    """Start the child as a background shell would (``nohup``, ``&``): SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_sigint_stops_a_node_that_inherited_it_ignored(synthetic_onnx, start_node):
    node = start_node(preexec_fn=ignore_sigint, model_path=str(synthetic_onnx), device='cpu')
    node.wait_for_log('out /diagnostics')  # active: the handler is in place by then
    node.process.send_signal(signal.SIGINT)
    assert node.process.wait(timeout=30.0) == 0, node.log()
    assert 'shut down: inference stopped, model freed' in node.log()  # lifecycle shutdown


@pytest.mark.slow
def test_lossy_large_frames_warn_once_with_the_profile(synthetic_onnx, start_node, make_client,
                                                       monkeypatch):
    """1280x720 best effort from another process with default FastDDS settings loses frames."""
    for name in PROFILE_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    node = start_node(model_path=str(synthetic_onnx), device='cpu', default_action='hold',
                      max_rate_hz=0.0, max_image_age_s=0.0, diagnostic_period=1.0)
    client = make_client(outputs=('/diagnostics',))
    client.wait_for_node(timeout_s=60.0)
    wait_for_diagnostics(client, lambda v: v['state'] == 'active')
    camera = subprocess.run(
        [sys.executable, '-m', 'bench.camera', '1280x720', '--rate', '30', '--seconds', '6',
         '--topic', '/affordance/image'],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert camera.returncode == 0, camera.stderr
    values = wait_for_diagnostics(client, lambda v: int(v['images lost in transport']) > 0)
    lost, received = int(values['images lost in transport']), int(values['images received'])
    print(f'camera: {camera.stdout.strip()}; node received {received}, lost {lost}')
    assert lost > 0.1 * (lost + received)
    log = node.wait_for_log('[lost_in_transport]')
    assert log.count('[lost_in_transport]') == 1, log  # once a minute at most
    line = next(line for line in log.splitlines() if '[lost_in_transport]' in line)
    assert 'config/fastdds_large_images.xml' in line
    assert 'FASTRTPS_DEFAULT_PROFILES_FILE=' in line and 'lost in transport' in line
    warned = [array for array in client.messages('/diagnostics')
              for status in array.status if 'lost in transport' in status.message]
    assert warned, 'the loss never reached /diagnostics'
    level = warned[0].status[0].level
    assert (int.from_bytes(level, 'little') if isinstance(level, bytes) else level) == 1
