"""The end-to-end demo: synthetic data -> brief training -> ONNX -> ROS node -> overlays."""
