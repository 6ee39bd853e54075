"""Checkout-only helpers that drive the ROS node from outside: a node process and a client.

Used by the demo, the node benchmark and the ROS tests. They live here, next to ``training``,
``bench`` and ``demo``, rather than in the installed package: a robot never needs them, and
:mod:`harness.node_process` finds ``config/params.yaml`` in the checkout.
"""
