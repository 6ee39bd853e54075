"""Affordance-grounding metrics KLD, SIM and NSS, exactly as the reference evaluation.

Everything follows docs/method.md, "Metrics", epsilons and dtypes included: the prediction is a
float32 map in [0, 1] (the output of :func:`normalize_map`), the ground truth a float64 map in
[0, 1] (the output of :func:`load_gt_map`). Both are ``(H, W)`` arrays of the same shape,
224 x 224 in the benchmark. The prediction is never upcast before the divisions, so the
float32 rounding of the reference numbers is reproduced.

One deliberate deviation: NSS of a constant prediction (population std 0) is 0.0 instead of
the reference's NaN (which would poison the mean over images). Normal cases are unchanged.
"""

from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple

from affordance_grounding.model.calibration import minmax_last_dim
import cv2
import numpy as np
import torch

KLD_SIM_EPS = 1e-12
NSS_EPS = 1e-12
MINMAX_EPS = 1e-10
NSS_GT_THRESHOLD = 0.1
METRIC_NAMES = ('kld', 'sim', 'nss')


def normalize_map(map14: np.ndarray, size: int = 224) -> np.ndarray:
    """Upsample a patch-grid map bilinearly and min-max normalise it.

    ``cv2.resize`` with ``INTER_LINEAR`` equals torch ``interpolate(mode='bilinear',
    align_corners=False, antialias=False)``.

    Args:
        map14: Score map ``(h, w)``, usually the 14 x 14 patch grid; cast to float32.
        size: Output side length in pixels.

    Returns:
        float32 ``(size, size)`` map ``(x - min) / (max - min + 1e-10)`` in [0, 1]; a constant
        map becomes all zeros.

    Raises:
        ValueError: If ``map14`` is not two-dimensional.
    """
    map14 = np.asarray(map14, dtype=np.float32)
    _check_2d(map14, 'map14')
    resized = cv2.resize(map14, (size, size), interpolation=cv2.INTER_LINEAR)  # (size, size)
    return minmax_numpy(resized, MINMAX_EPS)


def minmax_numpy(values: np.ndarray, eps: float) -> np.ndarray:
    """Min-max a whole numpy array in its own dtype through the project's one min-max.

    torch runs the same IEEE operations as numpy in that dtype, so the float32 rounding of
    the reference evaluation is kept (tested against the numpy formula).
    """
    flat = torch.from_numpy(np.ascontiguousarray(values)).reshape(-1)  # (H*W,) shares memory
    return minmax_last_dim(flat, eps).numpy().reshape(values.shape)


def load_gt_map(gt_uint8: np.ndarray, size: int = 224) -> np.ndarray:
    """Turn an 8-bit ground-truth heat map into the float64 map the metrics compare against.

    No binarisation and no min-max: the map is only scaled to [0, 1] and resized.

    Args:
        gt_uint8: Grayscale ground truth ``(H, W)``, dtype uint8, values 0..255.
        size: Output side length in pixels.

    Returns:
        float64 ``(size, size)`` map with values in [0, 1].

    Raises:
        ValueError: If the array is not a 2-D uint8 image.
    """
    gt_uint8 = np.asarray(gt_uint8)
    _check_2d(gt_uint8, 'gt_uint8')
    if gt_uint8.dtype != np.uint8:
        raise ValueError(
            f'gt_uint8 must have dtype uint8 (a heat map read with cv2.IMREAD_GRAYSCALE), '
            f'got {gt_uint8.dtype}; pass the raw 0..255 mask, not a normalised one')
    gt = gt_uint8 / 255.0  # float64
    return cv2.resize(gt, (size, size), interpolation=cv2.INTER_LINEAR)


def kld(pred: np.ndarray, gt: np.ndarray) -> float:
    """Kullback-Leibler divergence of the prediction from the ground truth (lower is better).

    ``p = pred / (sum(pred) + eps)``, ``g = gt / (sum(gt) + eps)``,
    ``KLD = sum(g * ln(g / (p + eps) + eps))`` with ``eps = 1e-12``.

    Args:
        pred: Predicted map ``(H, W)``, float32, non-negative.
        gt: Ground-truth map ``(H, W)``, float64, non-negative.

    Returns:
        The divergence in nats.
    """
    pred_dist, gt_dist = _to_distributions(pred, gt)
    return float(np.sum(gt_dist * np.log(gt_dist / (pred_dist + KLD_SIM_EPS) + KLD_SIM_EPS)))


def sim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Histogram-intersection similarity of the two maps as distributions (higher is better).

    Args:
        pred: Predicted map ``(H, W)``, float32, non-negative.
        gt: Ground-truth map ``(H, W)``, float64, non-negative.

    Returns:
        ``sum(min(p, g))`` in [0, 1].
    """
    pred_dist, gt_dist = _to_distributions(pred, gt)
    return float(np.sum(np.minimum(pred_dist, gt_dist)))


def nss(pred: np.ndarray, gt: np.ndarray) -> float:
    """Normalised scanpath saliency: mean z-score of the prediction on the GT "fixations".

    The fixations are the pixels whose min-max normalised GT is strictly above 0.1. The
    denominator carries the reference's per-pixel epsilon: ``|F| + H * W * 1e-12``.

    Args:
        pred: Predicted map ``(H, W)``, float32.
        gt: Ground-truth map ``(H, W)``, float64.

    Returns:
        The NSS score (higher is better); 0.0 for a constant prediction.
    """
    _check_same_shape(pred, gt)
    pred = np.asarray(pred) / 255.0  # no effect on the score; kept for float32 fidelity
    gt = np.asarray(gt) / 255.0
    pred_std = pred.std()  # population std (ddof 0)
    if pred_std == 0:
        return 0.0
    pred_z = (pred - pred.mean()) / pred_std  # (H, W)
    gt_unit = minmax_numpy(gt, NSS_EPS)  # (H, W) in [0, 1]
    fixations = (gt_unit > NSS_GT_THRESHOLD).astype(np.float64)  # (H, W), strict threshold
    return float(np.sum(pred_z * fixations) / np.sum(fixations + NSS_EPS))


def compute_metrics(pred: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    """Score one prediction against one ground truth.

    Args:
        pred: Predicted map ``(H, W)``, float32 in [0, 1] (see :func:`normalize_map`).
        gt: Ground-truth map ``(H, W)``, float64 in [0, 1] (see :func:`load_gt_map`).

    Returns:
        ``{'kld': ..., 'sim': ..., 'nss': ...}``.
    """
    return {'kld': kld(pred, gt), 'sim': sim(pred, gt), 'nss': nss(pred, gt)}


@dataclass(frozen=True)
class MetricSummary:
    """Averages of the metrics over a set of test images.

    Attributes:
        mean: Plain mean over all images per metric (the reported benchmark number).
        per_class: Per affordance class, the mean over that class's images per metric.
        num_images: Total number of images.
        images_per_class: Number of images per class.
    """

    mean: Dict[str, float]
    per_class: Dict[str, Dict[str, float]]
    num_images: int
    images_per_class: Dict[str, int]


class MetricAccumulator:
    """Collects per-image metrics and averages them per image and per class.

    Example:
        >>> accumulator = MetricAccumulator()
        >>> accumulator.add({'kld': 1.0, 'sim': 0.5, 'nss': 2.0}, 'hold')
        >>> accumulator.summary().mean['kld']
        1.0
    """

    def __init__(self) -> None:
        """Start with no images."""
        self._rows: List[Dict[str, float]] = []
        self._classes: List[str] = []

    def __len__(self) -> int:
        """Return the number of images added so far."""
        return len(self._rows)

    def add(self, metrics: Mapping[str, float], class_name: str) -> None:
        """Record the metrics of one image.

        Args:
            metrics: Mapping with at least the keys ``kld``, ``sim`` and ``nss``.
            class_name: Affordance label of the image.

        Raises:
            KeyError: If a metric is missing.
        """
        missing = [name for name in METRIC_NAMES if name not in metrics]
        if missing:
            raise KeyError(f'metrics {missing} missing from {dict(metrics)}; expected '
                           f'the keys {METRIC_NAMES} as returned by compute_metrics')
        self._rows.append({name: float(metrics[name]) for name in METRIC_NAMES})
        self._classes.append(class_name)

    def summary(self) -> MetricSummary:
        """Average everything added so far.

        Returns:
            The overall and per-class means.

        Raises:
            RuntimeError: If no image was added.
        """
        if not self._rows:
            raise RuntimeError('no metrics were added; call add() once per test image first')
        table = np.array([[row[name] for name in METRIC_NAMES] for row in self._rows])  # (N, 3)
        classes = np.array(self._classes)
        per_class = {}
        images_per_class = {}
        for class_name in sorted(set(self._classes)):
            rows = table[classes == class_name]  # (N_c, 3)
            per_class[class_name] = _to_metric_dict(rows.mean(axis=0))
            images_per_class[class_name] = len(rows)
        return MetricSummary(mean=_to_metric_dict(table.mean(axis=0)), per_class=per_class,
                             num_images=len(table), images_per_class=images_per_class)


def _to_distributions(pred: np.ndarray, gt: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Normalise both maps to sum to one (up to the epsilon), keeping their dtypes."""
    _check_same_shape(pred, gt)
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    return pred / (pred.sum() + KLD_SIM_EPS), gt / (gt.sum() + KLD_SIM_EPS)


def _to_metric_dict(values: np.ndarray) -> Dict[str, float]:
    """Name a ``(3,)`` vector of metric values."""
    return {name: float(value) for name, value in zip(METRIC_NAMES, values)}


def _check_2d(array: np.ndarray, name: str) -> None:
    """Raise if an array is not a single-channel 2-D map."""
    if array.ndim != 2:
        raise ValueError(f'{name} must be a 2-D (H, W) map, got shape {array.shape}')


def _check_same_shape(pred: np.ndarray, gt: np.ndarray) -> None:
    """Raise if prediction and ground truth cannot be compared pixel by pixel."""
    if np.shape(pred) != np.shape(gt):
        raise ValueError(f'pred shape {np.shape(pred)} differs from gt shape {np.shape(gt)}; '
                         f'resize both to the same size (normalize_map / load_gt_map)')
