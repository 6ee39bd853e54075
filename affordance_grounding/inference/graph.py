"""The inference graph every backend runs: image -> (affordance, cam, affinity), all classes.

:class:`GroundingGraph` wraps an :class:`AffordanceGrounder` for export and for the PyTorch
backend: the prompt table is a buffer (a constant in ONNX), there is no class selection, the
upsample size is a constant and everything after the backbones runs in float32. The backbones
may run in float16 (an FP16-typed ONNX for strongly typed TensorRT builds, or autocast).
"""

import copy
from typing import Tuple

from affordance_grounding.config import CALIBRATIONS
from affordance_grounding.inference.io_spec import ModelMetadata, PRECISIONS
from affordance_grounding.model.calibration import upsample_and_normalize
from affordance_grounding.model.grounding import AffordanceGrounder, BackboneFeatures
import torch
from torch import nn

BACKBONE_DTYPES = {'fp32': torch.float32, 'fp16': torch.float16}


class GroundingGraph(nn.Module):
    """Whole-model graph with a fixed calibration and float32 outputs."""

    def __init__(self, grounder: AffordanceGrounder, calibration: str = 'clip',
                 precision: str = 'fp32'):
        """Wrap a grounder.

        Args:
            grounder: Eval-mode network. With ``precision='fp16'`` its backbones must already
                be float16 (see :func:`build_grounding_graph`).
            calibration: Map returned as ``affordance``: ``none``, ``clip`` (default) or
                ``clip_local_mean``; fixed at construction, so at export time.
            precision: Backbone precision, ``fp32`` or ``fp16``.
        """
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f'unknown precision {precision!r}; expected one of {PRECISIONS}')
        if calibration not in CALIBRATIONS:
            raise ValueError(f'unknown calibration {calibration!r}; expected one of '
                             f'{list(CALIBRATIONS)}')
        self.grounder = grounder.eval()
        self.calibration = calibration
        self.precision = precision
        self.backbone_dtype = BACKBONE_DTYPES[precision]
        self.image_size = grounder.config.image_size

    def metadata(self, source_sha256: str = '') -> ModelMetadata:
        """Describe this graph for the exported file."""
        config = self.grounder.config
        return ModelMetadata(labels=tuple(config.labels), calibration=self.calibration,
                             image_size=config.image_size, grid_size=self.grounder.grid,
                             mean=config.dino_mean, std=config.dino_std,
                             precision=self.precision, source_sha256=source_sha256)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the graph.

        Args:
            image: (B, 3, S, S) float32, normalised with the config's DINO mean/std.

        Returns:
            ``(affordance, cam, affinity)``: float32 (B, K, S, S), (B, K, G, G), (B, K, G, G).
        """
        return self.compute_outputs(self.compute_features(image))

    def compute_features(self, image: torch.Tensor) -> BackboneFeatures:
        """Run both backbones in the backbone precision; returns float32 features."""
        grounder = self.grounder
        clip_input = grounder.to_clip_input(image).to(self.backbone_dtype)  # (B, 3, S, S)
        clip_tokens = grounder.clip(clip_input)  # (B, P, E)
        dino_keys = grounder.dino(image.to(self.backbone_dtype))  # (B, P, D)
        return BackboneFeatures(clip_tokens=clip_tokens.float(), dino_keys=dino_keys.float())

    def compute_outputs(self, features: BackboneFeatures
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Head, CLIP affinity, calibration, upsample and min-max, all in float32."""
        maps = self.grounder.forward_head(features)  # each (B, K, G, G)
        selected = maps.select(self.calibration).float()  # (B, K, G, G)
        affordance = upsample_and_normalize(selected, self.image_size)  # (B, K, S, S)
        return affordance, maps.cam.float(), maps.affinity.float()


def build_grounding_graph(grounder: AffordanceGrounder, calibration: str = 'clip',
                          precision: str = 'fp32') -> GroundingGraph:
    """Return the graph for export; for ``fp16`` a copy whose backbones are float16.

    The head, the prompt table and every normalisation stay float32 (FP16-typed ONNX for a
    strongly typed TensorRT build: docs/export.md). The given grounder is never modified.
    """
    if precision == 'fp16':
        grounder = copy.deepcopy(grounder)
        grounder.clip.half()
        grounder.dino.half()
    return GroundingGraph(grounder, calibration, precision).eval()
