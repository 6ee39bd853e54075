"""Offline code for SelectiveCL: data, losses, training, evaluation and export.

This package is run from the checkout (``python -m training.<module>``) and is not installed
on robots. It may import ``affordance_grounding``; nothing in ``affordance_grounding`` imports
it.
"""
