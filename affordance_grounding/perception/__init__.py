"""The per-frame job without ROS: settings, codecs, pre/postprocessing, regions, timings."""
