"""The FastDDS large-image profile and the lossy-transport warning's bookkeeping (no DDS)."""

from pathlib import Path
import xml.etree.ElementTree as ElementTree

from affordance_grounding.ros import transport
from affordance_grounding.ros.health import HealthSnapshot, summarise_health
from affordance_grounding.ros.transport import (
    installed_profile_path, loss_advice, profile_in_use, TransportLossMonitor)

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = '{http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles}'


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_shipped_profile_sets_the_measured_transports():
    root = ElementTree.parse(REPO / 'config' / 'fastdds_large_images.xml').getroot()
    descriptors = {d.findtext(f'{NAMESPACE}transport_id'): d
                   for d in root.iter(f'{NAMESPACE}transport_descriptor')}
    shm, udp = descriptors['large_images_shm'], descriptors['large_images_udp']
    assert shm.findtext(f'{NAMESPACE}type') == 'SHM'
    assert int(shm.findtext(f'{NAMESPACE}segment_size')) == 16 * 1024 * 1024
    assert udp.findtext(f'{NAMESPACE}type') == 'UDPv4'
    assert int(udp.findtext(f'{NAMESPACE}sendBufferSize')) == 4 * 1024 * 1024
    assert int(udp.findtext(f'{NAMESPACE}receiveBufferSize')) == 4 * 1024 * 1024
    participant, = root.iter(f'{NAMESPACE}participant')
    assert participant.get('is_default_profile') == 'true'
    assert participant.findtext(f'{NAMESPACE}rtps/{NAMESPACE}useBuiltinTransports') == 'false'
    used = [e.text for e in participant.iter(f'{NAMESPACE}transport_id')]
    assert used == ['large_images_shm', 'large_images_udp']


def test_profile_path_falls_back_to_the_checkout(monkeypatch):
    monkeypatch.delenv('AMENT_PREFIX_PATH', raising=False)
    assert Path(installed_profile_path()) == REPO / 'config' / 'fastdds_large_images.xml'


def test_profile_path_prefers_the_installed_share(monkeypatch, tmp_path):
    (tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (tmp_path / 'share/ament_index/resource_index/packages/affordance_grounding').write_text('')
    (tmp_path / 'share' / 'affordance_grounding').mkdir()
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    assert Path(installed_profile_path()) == (
        tmp_path / 'share/affordance_grounding/config/fastdds_large_images.xml')


def test_profile_in_use_reads_either_variable(monkeypatch):
    for name in transport.PROFILE_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    assert profile_in_use() is None
    monkeypatch.setenv('FASTDDS_DEFAULT_PROFILES_FILE', '/x.xml')
    assert profile_in_use() == '/x.xml'


def test_loss_monitor_warns_above_ten_percent_once_a_minute():
    clock = FakeClock()
    monitor = TransportLossMonitor(clock)
    assert monitor.update(received_total=30, lost_total=3) == (False, False)  # 9%: fine
    assert monitor.update(received_total=50, lost_total=10) == (True, True)  # 7 of 27
    assert monitor.window == (7, 27)
    clock.now = 59.0
    assert monitor.update(received_total=60, lost_total=40) == (True, False)  # throttled
    clock.now = 60.5
    assert monitor.update(received_total=70, lost_total=70) == (True, True)
    assert monitor.update(received_total=70, lost_total=70) == (False, False)  # no traffic


def test_loss_advice_names_the_profile_and_the_variable():
    text = loss_advice(27, 30, '/opt/share/p.xml', None)
    assert '27 of 30 images (90%) lost in transport' in text
    assert 'FASTRTPS_DEFAULT_PROFILES_FILE=/opt/share/p.xml' in text
    assert 'FASTDDS_DEFAULT_PROFILES_FILE' in text and 'camera driver' in text
    text = loss_advice(27, 30, '/opt/share/p.xml', '/opt/share/p.xml')
    assert 'this node uses /opt/share/p.xml' in text and 'camera driver' in text


def test_stream_warnings_lead_the_diagnostics_summary():
    snapshot = HealthSnapshot(input_hz=3.0, output_hz=3.0, images_received=10,
                              frames_published=10, stale_frames=0, lost_in_transport=90,
                              stage_ms={}, delay_ms=(0.0, 0.0), problems={})
    assert summarise_health(snapshot, 'active', '', 'hold', 1.0, ['lost']) == ('warn', 'lost')
    assert summarise_health(snapshot, 'active', '', 'hold', 1.0) == ('ok', '3.0 Hz')
