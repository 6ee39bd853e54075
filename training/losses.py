"""SelectiveCL's contrastive losses and optimiser groups (see docs/method.md, "Losses").

Small modules in the style of open_clip's ``ClipLoss``: one helper per step, a scalar loss
from ``forward``. The CLIP affinity maps themselves (S_ego, S_exo, Q) are computed once per
step by ``training.model.compute_clip_affinities``; this module adds the gamma-2 foreground
mask that only the pixel loss uses, and the prototype weights of docs/method.md, "Training step".

Shapes: B samples, E exo images per sample (flat exo index f = b * E + n), D embedding width,
G grid side, P = G * G pixels.
"""

from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple

from affordance_grounding.model.calibration import minmax_per_map
import torch
from torch import nn
import torch.nn.functional as F

from training.config import TrainConfig
from training.parts import PartMaps

# The recipe's values have one home, TrainConfig; these names are the modules' defaults.
TEMPERATURE = TrainConfig.temperature  # tau
BASE_TEMPERATURE = TrainConfig.base_temperature  # tau_b, left at its default by the reference
# Both losses are multiplied by tau / tau_b = 0.5 / 0.07 ~ 7.142857, an implicit loss weight
# of the reference kept on purpose (docs/method.md, "Reference bugs").
LOSS_SCALE = TEMPERATURE / BASE_TEMPERATURE
WEIGHT_DECAY = TrainConfig.weight_decay

# Optimiser table (docs/method.md, "Losses"), keyed by module role and sub-module path
# ('' = the whole role module): (weight lr multiplier, bias lr multiplier). The reference
# derived it from the substring 'fc' in parameter names; only aff_proj.fc1/fc2 matched, so
# they train at 10x/20x.
PARAM_GROUP_TABLE: Dict[str, Tuple[Tuple[str, float, float], ...]] = {
    'aff_proj': (('norm', 1.0, 2.0), ('fc1', 10.0, 20.0), ('fc2', 10.0, 20.0)),
    'aff_ego_proj': (('', 1.0, 2.0),),
    'aff_exo_proj': (('', 1.0, 2.0),),
    'aff_classifier': (('', 1.0, 2.0),),
    'K_contrast_projection': (('', 1.0, 2.0),),
    'pixel_contrast_projection': (('', 1.0, 2.0),),
}


def _upcast(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors (mixed precision) to float32; other dtypes unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def compute_foreground_mask(s_ego: torch.Tensor, threshold: float) -> torch.Tensor:
    """Ego CLIP foreground G2 = minmax(S_ego) > gamma 2 (docs/method.md, "Training step").

    The min-max has no epsilon, as in the reference; a constant map (NaN in the reference,
    where NaN > gamma is False) gives an all-False mask here too, without the NaN.

    Args:
        s_ego: (B, G, G) raw ego CLIP cosine.
        threshold: gamma 2.

    Returns:
        (B, G, G) bool mask.
    """
    return minmax_per_map(s_ego[:, None])[:, 0] > threshold  # (B, 1, G, G) -> (B, G, G)


@dataclass
class PrototypeWeights:
    """Spatial weights of the prototype loss (docs/method.md, "Training step").

    Attributes:
        anchor: (B, G, G) W_a: S_ego where a part was found, ones otherwise.
        positive_ego: (B, G, G) P_ego.
        negative_ego: (B, G, G) 1 - Q_ego (may be negative).
        positive_exo: (BE, G, G) P_exo.
        negative_exo: (BE, G, G) 1 - Q_exo (may be negative).
    """

    anchor: torch.Tensor
    positive_ego: torch.Tensor
    negative_ego: torch.Tensor
    positive_exo: torch.Tensor
    negative_exo: torch.Tensor


def build_prototype_weights(parts: PartMaps, cam_ego: torch.Tensor, cam_exo: torch.Tensor,
                            s_ego: torch.Tensor, epoch: int) -> PrototypeWeights:
    """Positive, negative and anchor weights from the part maps (docs/method.md, "Training step").

    From epoch 1 on the negatives carry max(CAM, 0), and the gradient flows into the CAMs.

    Args:
        parts: Output of ``training.parts.discover_parts``.
        cam_ego: (B, G, G) raw ego CAM of each sample's label.
        cam_exo: (BE, G, G) raw exo CAM of each sample's label.
        s_ego: (B, G, G) raw ego CLIP cosine.
        epoch: 0-based epoch.

    Returns:
        The five weight maps.
    """
    q_ego, q_exo = parts.ego, parts.exo
    if epoch >= 1:
        q_ego = q_ego * cam_ego.clamp(min=0)
        q_exo = q_exo * cam_exo.clamp(min=0)
    anchor = torch.where(parts.is_part[:, None, None], s_ego, torch.ones_like(s_ego))
    return PrototypeWeights(anchor=anchor, positive_ego=parts.ego, negative_ego=1 - q_ego,
                            positive_exo=parts.exo, negative_exo=1 - q_exo)


def pool_embeddings(embeddings: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted spatial mean (not divided by the weight sum), then L2-normalised.

    Args:
        embeddings: (N, D, G, G) embeddings.
        weights: (N, G, G) spatial weights.

    Returns:
        (N, D) unit vectors (eps 1e-12).
    """
    pooled = (embeddings * weights[:, None]).mean(dim=(2, 3))  # (N, D)
    return F.normalize(pooled, dim=1, eps=1e-12)


class PrototypeContrastiveLoss(nn.Module):
    """Prototypical contrastive loss L_proto (docs/method.md, "Losses").

    Anchors are the pooled ego embeddings; columns are, in this order, the ego positive,
    ego negative, exo positive and exo negative prototypes. For anchor b the positives are
    same-label ego positives other than its own and same-label exo positives; the
    denominator holds every ego positive except its own, same-label ego negatives, every exo
    positive and same-label exo negatives.
    """

    def __init__(self, temperature: float = TEMPERATURE,
                 base_temperature: float = BASE_TEMPERATURE):
        """Create the loss with temperature tau and base temperature tau_b."""
        super().__init__()
        self.temperature = temperature
        self.base_temperature = base_temperature

    def build_columns(self, embed_ego: torch.Tensor, embed_exo: torch.Tensor,
                      weights: PrototypeWeights,
                      labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prototype columns, their labels and their block index 0..3, in reference order."""
        num_exo = embed_exo.shape[0] // embed_ego.shape[0]
        exo_labels = labels.repeat_interleave(num_exo)  # (BE,), label of sample f // E
        columns = torch.cat([pool_embeddings(embed_ego, weights.positive_ego),
                             pool_embeddings(embed_ego, weights.negative_ego),
                             pool_embeddings(embed_exo, weights.positive_exo),
                             pool_embeddings(embed_exo, weights.negative_exo)])  # (2B+2BE, D)
        column_labels = torch.cat([labels, labels, exo_labels, exo_labels])  # (2B+2BE,)
        sizes = torch.tensor([labels.shape[0], labels.shape[0], exo_labels.shape[0],
                              exo_labels.shape[0]], device=labels.device)
        blocks = torch.repeat_interleave(torch.arange(4, device=labels.device), sizes)
        return columns, column_labels, blocks

    @staticmethod
    def build_masks(labels: torch.Tensor, column_labels: torch.Tensor,
                    blocks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, M) bool positive and denominator masks of docs/method.md, "Losses"."""
        batch = labels.shape[0]
        same = labels[:, None] == column_labels[None, :]  # (B, M)
        columns = torch.arange(column_labels.shape[0], device=labels.device)
        own = columns[None, :] == torch.arange(batch, device=labels.device)[:, None]  # (B, M)
        ego_pos, ego_neg = blocks == 0, blocks == 1  # (M,)
        exo_pos, exo_neg = blocks == 2, blocks == 3  # (M,)
        positives = (ego_pos & ~own & same) | (exo_pos & same)
        denominator = (ego_pos & ~own) | (ego_neg & same) | exo_pos | (exo_neg & same)
        return positives, denominator

    def anchor_losses(self, embed_ego: torch.Tensor, embed_exo: torch.Tensor,
                      weights: PrototypeWeights, labels: torch.Tensor) -> torch.Tensor:
        """Per-anchor losses l_b.

        Args:
            embed_ego: (B, D, G, G) ego embeddings (K_contrast_projection).
            embed_exo: (BE, D, G, G) exo embeddings.
            weights: Spatial weights of docs/method.md, "Training step".
            labels: (B,) int64 labels.

        Returns:
            (B,) losses, already multiplied by tau / tau_b.
        """
        embed_ego, embed_exo = _upcast(embed_ego), _upcast(embed_exo)
        anchors = pool_embeddings(embed_ego, _upcast(weights.anchor))  # (B, D)
        columns, column_labels, blocks = self.build_columns(embed_ego, embed_exo, weights,
                                                            labels)
        positives, denominator = self.build_masks(labels, column_labels, blocks)  # (B, M)
        logits = anchors @ columns.T / self.temperature  # (B, M)
        log_denominator = logits.masked_fill(~denominator, float('-inf')).logsumexp(dim=1)
        log_prob = logits - log_denominator[:, None]  # (B, M)
        positive_count = positives.sum(dim=1).clamp(min=1)  # (B,), >= E by construction
        mean_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
        scale = self.temperature / self.base_temperature
        return -scale * mean_log_prob / positive_count

    def forward(self, embed_ego: torch.Tensor, embed_exo: torch.Tensor,
                weights: PrototypeWeights, labels: torch.Tensor) -> torch.Tensor:
        """Return L_proto, the mean of :meth:`anchor_losses` (scalar)."""
        with torch.autocast(device_type=embed_ego.device.type, enabled=False):
            return self.anchor_losses(embed_ego, embed_exo, weights, labels).mean()


class PixelContrastiveLoss(nn.Module):
    """Pixel contrastive loss L_pix on ego pixels split by CLIP (docs/method.md, "Losses")."""

    def __init__(self, temperature: float = TEMPERATURE,
                 base_temperature: float = BASE_TEMPERATURE):
        """Create the loss with temperature tau and base temperature tau_b."""
        super().__init__()
        self.temperature = temperature
        self.base_temperature = base_temperature

    @staticmethod
    def build_pixel_labels(s_ego: torch.Tensor, q_exo: torch.Tensor,
                           foreground: torch.Tensor) -> torch.Tensor:
        """Pixel labels 1[S_ego > rho_b], or G2 where no pixel passes.

        rho_b is the minimum over the E exo images of their maximum item-prompt cosine.

        Args:
            s_ego: (B, G, G) raw ego item-prompt cosine.
            q_exo: (BE, G, G) raw exo item-prompt cosine Q.
            foreground: (B, G, G) bool G2.

        Returns:
            (B, P) bool labels.
        """
        batch = s_ego.shape[0]
        per_sample = q_exo.reshape(batch, q_exo.shape[0] // batch, -1)  # (BE,G,G) -> (B,E,P)
        rho = per_sample.amax(dim=2).amin(dim=1)  # (B,): min over E of max over P
        labels = s_ego.flatten(1) > rho[:, None]  # (B, P)
        fallback = ~labels.any(dim=1, keepdim=True)  # (B, 1)
        return torch.where(fallback, foreground.flatten(1), labels)  # (B, P)

    def anchor_terms(self, embed_pixel: torch.Tensor,
                     labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean log-probability of the positives of every pixel, and the positive counts.

        Args:
            embed_pixel: (B, D, G, G) pixel embeddings (pixel_contrast_projection).
            labels: (B, P) bool pixel labels.

        Returns:
            ``(terms, counts)``: (B, P) m_p (0 where a pixel has no positive) and (B, P) |Pos|.
        """
        pixels = F.normalize(embed_pixel.flatten(2), dim=1, eps=1e-12)  # (B, D, P)
        logits = pixels.transpose(1, 2) @ pixels / self.temperature  # (B, P, P)
        itself = torch.eye(logits.shape[1], dtype=torch.bool, device=logits.device)  # (P, P)
        log_denominator = logits.masked_fill(itself, float('-inf')).logsumexp(dim=2)  # (B, P)
        positives = (labels[:, :, None] == labels[:, None, :]) & ~itself  # (B, P, P)
        log_prob = logits - log_denominator[..., None]  # (B, P, P)
        counts = positives.sum(dim=2)  # (B, P)
        summed = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=2)
        return summed / counts.clamp(min=1), counts

    def sample_losses(self, embed_pixel: torch.Tensor, s_ego: torch.Tensor,
                      q_exo: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
        """Per-sample losses; 0 for a sample without a kept anchor (the reference's NaN).

        Anchors kept: pixels with at least one positive that are also G2 foreground.

        Args:
            embed_pixel: (B, D, G, G) pixel embeddings.
            s_ego: (B, G, G) raw ego item-prompt cosine.
            q_exo: (BE, G, G) raw exo item-prompt cosine.
            foreground: (B, G, G) bool G2.

        Returns:
            (B,) losses, already multiplied by tau / tau_b.
        """
        labels = self.build_pixel_labels(_upcast(s_ego), _upcast(q_exo), foreground)  # (B, P)
        terms, counts = self.anchor_terms(_upcast(embed_pixel), labels)  # (B, P)
        kept = (counts > 0) & foreground.flatten(1)  # (B, P)
        kept_sum = torch.where(kept, terms, torch.zeros_like(terms)).sum(dim=1)  # (B,)
        scale = self.temperature / self.base_temperature
        return -scale * kept_sum / kept.sum(dim=1).clamp(min=1)

    def forward(self, embed_pixel: torch.Tensor, s_ego: torch.Tensor, q_exo: torch.Tensor,
                foreground: torch.Tensor) -> torch.Tensor:
        """Return L_pix = (sum of sample losses) / B (scalar); see :meth:`sample_losses`."""
        with torch.autocast(device_type=embed_pixel.device.type, enabled=False):
            losses = self.sample_losses(embed_pixel, s_ego, q_exo, foreground)
        return losses.sum() / losses.shape[0]


def _split_weights_and_biases(role: str, path: str, module: nn.Module,
                              seen: Dict[int, str]) -> Tuple[List[nn.Parameter], List]:
    """Trainable weights and biases of ``module`` (sub-module ``path`` of ``role``)."""
    weights, biases = [], []
    for name, parameter in module.named_parameters():
        full_name = '.'.join(part for part in (role, path, name) if part)
        if not parameter.requires_grad:
            continue
        if id(parameter) in seen:
            raise ValueError(f'parameter {full_name} is also reachable as '
                             f'{seen[id(parameter)]}; each parameter must appear in '
                             'PARAM_GROUP_TABLE exactly once')
        seen[id(parameter)] = full_name
        attribute = name.rsplit('.', 1)[-1]
        (biases if attribute == 'bias' else weights).append(parameter)
    return weights, biases


def build_param_groups(modules: Mapping[str, nn.Module], base_lr: float,
                       weight_decay: float = WEIGHT_DECAY) -> List[dict]:
    """SGD parameter groups of docs/method.md, "Losses" from :data:`PARAM_GROUP_TABLE`.

    A parameter whose attribute name is ``bias`` gets the bias multiplier, every other one
    (conv/linear weights, norm scales) the weight multiplier; weight decay is the same on
    every group (the reference decays biases and norms too). Frozen parameters are skipped.

    Args:
        modules: The trainable modules by role: ``aff_proj`` (LayerNorm ``norm`` + Linear
            ``fc1``/``fc2``), ``aff_ego_proj``, ``aff_exo_proj``, ``aff_classifier``,
            ``K_contrast_projection``, ``pixel_contrast_projection``; e.g.
            ``SelectiveCLModel.trainable_modules()``.
        base_lr: Base learning rate.
        weight_decay: Weight decay of every group.

    Returns:
        Non-empty groups ``{'params', 'lr', 'weight_decay', 'lr_multiplier'}``, one per
        multiplier, ordered 1, 2, 10, 20.

    Raises:
        ValueError: A role is missing or unknown, a trainable parameter is outside the table,
            or a parameter is listed twice.
    """
    if set(modules) != set(PARAM_GROUP_TABLE):
        raise ValueError(f'expected modules {sorted(PARAM_GROUP_TABLE)}, got {sorted(modules)}')
    by_multiplier: Dict[float, List[nn.Parameter]] = {}
    seen: Dict[int, str] = {}
    for role, entries in PARAM_GROUP_TABLE.items():
        for path, weight_multiplier, bias_multiplier in entries:
            submodule = modules[role].get_submodule(path)
            weights, biases = _split_weights_and_biases(role, path, submodule, seen)
            by_multiplier.setdefault(weight_multiplier, []).extend(weights)
            by_multiplier.setdefault(bias_multiplier, []).extend(biases)
        for name, parameter in modules[role].named_parameters():
            if parameter.requires_grad and id(parameter) not in seen:
                raise ValueError(f'parameter {role}.{name} has no entry in PARAM_GROUP_TABLE; '
                                 'add its sub-module to the table')
    return [{'params': params, 'lr': base_lr * multiplier, 'weight_decay': weight_decay,
             'lr_multiplier': multiplier}
            for multiplier, params in sorted(by_multiplier.items()) if params]
