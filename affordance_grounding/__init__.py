"""Weakly supervised affordance grounding (SelectiveCL) for ROS 2 robots.

The package is importable without ROS and without the offline ``training`` code:
``model`` holds the network, ``inference`` the model files and backends, ``perception`` the
per-frame job, ``geometry`` the 3D chain, and ``ros`` and ``bag`` the adapters around them.
"""

__version__ = '0.1.0'
