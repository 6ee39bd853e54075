"""Region cloud, grasp pose and their markers as ROS messages (no graph needed)."""

from affordance_grounding.geometry.grasp_pose import estimate_grasp_pose
from affordance_grounding.perception.frame_processor import Outputs3D
from affordance_grounding.ros.messages import (
    CLOUD_DTYPE, to_frame_markers, to_grasp_pose_markers, to_point_cloud, to_pose_stamped)
import numpy as np
import pytest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

pytestmark = pytest.mark.ros


def header() -> Header:
    msg = Header(frame_id='camera_color_optical_frame')
    msg.stamp.sec, msg.stamp.nanosec = 12, 345
    return msg


def flat_pose():
    grid = np.mgrid[0:40, 0:20].reshape(2, -1).T * 0.005  # 20 x 10 cm patch at z = 1 m
    points = np.column_stack([grid, np.ones(len(grid))]).astype(np.float32)
    return estimate_grasp_pose(points).pose


def test_point_cloud_round_trips_points_and_intensity():
    points = np.array([[0.1, -0.2, 1.5], [0.0, 0.3, 0.7]], np.float32)
    intensity = np.array([0.25, 1.0], np.float32)
    msg = to_point_cloud(header(), np.column_stack([points, intensity]))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    assert msg.header.frame_id == 'camera_color_optical_frame'
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 2, 16, 32)
    decoded = np.frombuffer(bytes(msg.data), CLOUD_DTYPE)
    np.testing.assert_array_equal(np.stack([decoded[c] for c in 'xyz'], 1), points)
    np.testing.assert_array_equal(decoded['intensity'], intensity)


def test_pose_stamped_carries_position_and_unit_quaternion():
    pose = flat_pose()
    msg = to_pose_stamped(header(), pose)
    assert msg.header.frame_id == 'camera_color_optical_frame'
    q = msg.pose.orientation
    assert q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2 == pytest.approx(1.0)
    assert msg.pose.position.z == pytest.approx(1.0)
    assert (q.x, q.y, q.z, q.w) == pytest.approx(pose.quaternion_xyzw)


def test_pose_markers_arrow_ends_at_the_pose_and_patch_spans_the_region():
    pose = flat_pose()
    arrow, patch = to_grasp_pose_markers(header(), pose).markers
    assert (arrow.type, arrow.id, patch.type, patch.id) == (Marker.ARROW, 2, Marker.CUBE, 3)
    tail, tip = arrow.points
    assert (tip.x, tip.y, tip.z) == pytest.approx(tuple(pose.position))
    assert tail.z < tip.z  # approach along +z of the optical frame, into the surface
    assert patch.scale.x == pytest.approx(0.195 * 0.9, rel=0.05)  # 5th-95th percentile
    assert patch.scale.y == pytest.approx(0.095 * 0.9, rel=0.1)


def frame_marker_actions(point, pose):
    markers = to_frame_markers(header(), Outputs3D(point, None, pose), 'hold').markers
    assert all(m.ns == 'affordance_grasp' and m.header.stamp.sec == 12 for m in markers)
    return [(m.id, m.action) for m in markers]


def test_frame_markers_draw_what_exists_and_delete_the_rest():
    add, delete = Marker.ADD, Marker.DELETE
    point = (0.1, -0.2, 1.0)
    assert frame_marker_actions(point, flat_pose()) == [(0, add), (1, add), (2, add), (3, add)]
    # No pose: the previous arrow and patch go.
    assert frame_marker_actions(point, None) == [(0, add), (1, add), (2, delete), (3, delete)]
    # No grasp point: the previous sphere, label and pose go too, whatever the pose says.
    for pose in (None, flat_pose()):
        assert frame_marker_actions(None, pose) == [(i, delete) for i in range(4)]
