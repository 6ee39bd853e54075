"""Depth pairing by stamp and the result -> message conversions."""

from affordance_grounding.ros.messages import (
    to_diagnostic_array, to_grasp_markers, to_point_stamped)
from affordance_grounding.ros.pairing import StampedBuffer
from diagnostic_msgs.msg import DiagnosticStatus
import pytest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

pytestmark = pytest.mark.ros


def test_stamped_buffer_returns_the_closest_item_within_the_slop():
    buffer = StampedBuffer(capacity=3)
    for stamp_ns in (100, 200, 300, 400):  # 100 falls out (capacity 3)
        buffer.add(stamp_ns, f'depth{stamp_ns}')
    assert buffer.closest(290, slop_ns=20) == 'depth300'
    assert buffer.closest(250, slop_ns=40) is None
    assert buffer.closest(100, slop_ns=50) is None
    buffer.clear()
    assert buffer.closest(300, slop_ns=1000) is None


def header():
    result = Header(frame_id='camera_color_optical_frame')
    result.stamp.sec, result.stamp.nanosec = 12, 345
    return result


def test_point_and_markers_carry_the_image_header():
    point = to_point_stamped(header(), (0.1, -0.2, 1.5))
    assert (point.point.x, point.point.y, point.point.z) == (0.1, -0.2, 1.5)
    assert point.header.frame_id == 'camera_color_optical_frame'
    assert (point.header.stamp.sec, point.header.stamp.nanosec) == (12, 345)
    markers = to_grasp_markers(header(), (0.1, -0.2, 1.5), 'hold').markers
    assert [m.type for m in markers] == [Marker.SPHERE, Marker.TEXT_VIEW_FACING]
    assert [m.id for m in markers] == [0, 1]  # fixed ids: each frame replaces the last
    assert markers[1].text == 'hold' and markers[0].pose.position.z == 1.5
    assert all(m.header.frame_id == 'camera_color_optical_frame' for m in markers)


def test_diagnostic_array_holds_one_status():
    array = to_diagnostic_array(header().stamp, 'affordance_grounding: inference', 'cpu',
                                'warn', 'slow', [('inference mean (ms)', '12.0')])
    status = array.status[0]
    assert status.level == DiagnosticStatus.WARN and status.hardware_id == 'cpu'
    assert [(v.key, v.value) for v in status.values] == [('inference mean (ms)', '12.0')]
