"""A SamPredictor-style wrapper: ``set_image`` runs the backbones once, ``predict`` is cheap."""

from dataclasses import dataclass
from typing import Optional, Tuple

from affordance_grounding.model.grounding import AffordanceGrounder, BackboneFeatures
from affordance_grounding.runtime.postprocess import resize_to_input
from affordance_grounding.runtime.preprocess import ImagePreprocessor
from affordance_grounding.vocabulary import parse_action_command
import numpy as np
import torch


@dataclass
class Prediction:
    """One affordance prediction.

    Attributes:
        action: The requested label.
        heatmap: (H, W) float32 in [0, 1] at the input image resolution.
        network_heatmap: (S, S) float32 in [0, 1] in the network frame.
        cam: (G, G) raw class activation map.
        affinity: (G, G) min-max CLIP affinity in [0, 1].
    """

    action: str
    heatmap: np.ndarray
    network_heatmap: np.ndarray
    cam: np.ndarray
    affinity: np.ndarray


class AffordancePredictor:
    """Predict affordance heatmaps for one image and any number of actions."""

    def __init__(self, grounder: AffordanceGrounder, calibration: str = 'clip'):
        """Wrap an eval-mode grounder; ``calibration`` picks map 1, 2 or 3 (docs/method.md)."""
        self.grounder = grounder.eval()
        self.calibration = calibration
        config = grounder.config
        self.preprocessor = ImagePreprocessor(config.image_size, config.dino_mean,
                                              config.dino_std)
        self._features: Optional[BackboneFeatures] = None
        self._input_hw: Optional[Tuple[int, int]] = None

    @property
    def device(self) -> torch.device:
        """Device the grounder lives on."""
        return self.grounder.item_text.device

    @torch.inference_mode()
    def set_image(self, rgb: np.ndarray) -> None:
        """Run both backbones on an image and keep the features.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
        """
        image = self.preprocessor(rgb).to(self.device)
        self._features = self.grounder.forward_features(image)
        self._input_hw = (rgb.shape[0], rgb.shape[1])

    @torch.inference_mode()
    def predict(self, action: str) -> Prediction:
        """Heatmap for an action on the image given to :meth:`set_image`.

        Raises:
            RuntimeError: If no image was set.
            ValueError: If the action names none of the model's labels (spelled as the node
                accepts it: ``cut with`` and ``Cut_With`` mean ``cut_with``).
        """
        if self._features is None or self._input_hw is None:
            raise RuntimeError('call set_image() before predict()')
        _, index = parse_action_command(action, self.grounder.labels).key  # as the node does
        if index < 0:
            raise ValueError('empty action; give a label such as hold')
        class_index = torch.tensor([index], device=self.device)
        maps = self.grounder.forward_head(self._features, class_index)
        network = self.grounder.heatmaps(maps, self.calibration)[0, 0].float().cpu().numpy()
        return Prediction(action=action,
                          heatmap=resize_to_input(network, self._input_hw),
                          network_heatmap=network,
                          cam=maps.cam[0, 0].float().cpu().numpy(),
                          affinity=maps.affinity[0, 0].float().cpu().numpy())
