"""Offline processing of recorded rosbag2 files with ``rosbags`` (no ROS install needed)."""
