"""A camera driver stand-in: rgb8 frames, best effort, at a fixed rate, in its own process.

    .venv/bin/python -m bench.camera WIDTHxHEIGHT [--rate 30] [--seconds 10]
        [--topic /affordance/image]

Like a driver it publishes with ``qos_profile_sensor_data`` from its own DDS participant, so
its FastDDS settings are its own environment's (bench.transport and the lossy-stream test
start it with or without the profile). Only rclpy and numpy are imported: it starts fast.
Prints one ``CAMERA_RESULT {"sent": N, "seconds": S}`` line.
"""

import argparse
import json
import time
from typing import List, Optional

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

RESULT_PREFIX = 'CAMERA_RESULT '


def publish_frames(width: int, height: int, rate_hz: float, seconds: float,
                   topic: str) -> dict:
    """Wait for a subscriber, then stream for ``seconds``; returns what was sent."""
    rclpy.init()
    node = rclpy.create_node('bench_camera')
    publisher = node.create_publisher(Image, topic, qos_profile_sensor_data)
    msg = Image(height=height, width=width, encoding='rgb8', step=width * 3)
    msg.header.frame_id = 'camera_color_optical_frame'
    msg.data = np.random.default_rng(0).integers(0, 255, height * width * 3,
                                                 dtype=np.uint8).tobytes()
    deadline = time.monotonic() + 30.0
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the subscriber's reader matches our writer too (discovery is two-way)
    start, sent = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)
        sent += 1
        time.sleep(max(0.0, start + sent / rate_hz - time.monotonic()))
    elapsed = time.monotonic() - start
    node.destroy_node()
    rclpy.try_shutdown()
    return {'sent': sent, 'seconds': elapsed}


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments, stream, print the result line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('size', help='WIDTHxHEIGHT')
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--topic', default='/affordance/image')
    args = parser.parse_args(argv)
    width, height = (int(side) for side in args.size.split('x'))
    result = publish_frames(width, height, args.rate, args.seconds, args.topic)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
