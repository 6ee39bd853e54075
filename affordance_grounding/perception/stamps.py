"""Message stamps as integer nanoseconds: one rule for the node, the bag tool and pairing."""

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """``builtin_interfaces/Time`` (rclpy's or a bag's) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)
