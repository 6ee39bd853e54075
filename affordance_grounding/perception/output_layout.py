"""How the 3D outputs look: marker namespace and sizes, the cloud's point layout.

Shared by the node's rclpy message builders (ros/messages.py) and the bag tool's rosbags
builders (bag/messages.py); it imports no ROS package, so the bag tool runs without ROS.
"""

import numpy as np

MARKER_NAMESPACE = 'affordance_grasp'
# Marker ids in MARKER_NAMESPACE: fixed, so each frame replaces the previous frame's markers.
POINT_MARKER_IDS = (0, 1)  # sphere at the grasp point, action label
POSE_MARKER_IDS = (2, 3)  # approach arrow, fitted plane patch
SPHERE_DIAMETER_M = 0.03
TEXT_HEIGHT_M = 0.03
ARROW_LENGTH_M = 0.10
ARROW_SHAFT_M = 0.008
PATCH_THICKNESS_M = 0.002
# x, y, z, intensity: float32 little-endian, 16 bytes a point (PointCloud2 layout).
CLOUD_DTYPE = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4')])
