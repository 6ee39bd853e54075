"""Inference helpers shared by every backend: preprocessing and postprocessing."""
