"""The ROS-free per-frame job: what happens to one camera frame between decoding and publishing."""
