"""Pretraining of small CLIP- and DINO-style backbones on the synthetic affordance world."""
