"""ROS 2 layer: the only package that imports rclpy, message packages or cv_bridge."""
