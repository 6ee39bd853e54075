"""Weakly supervised affordance grounding (SelectiveCL) for ROS 2 robots.

The package is importable without ROS and without the offline ``training`` code:
``affordance_grounding.model`` holds the network, ``affordance_grounding.runtime`` the
inference helpers and ``affordance_grounding.ros`` the ROS 2 node.
"""

__version__ = '0.1.0'
