"""Drawing of one synthetic scene: clutter, a posed object made of parts, an actor, the GT.

Everything is drawn with OpenCV from a caller-provided random generator, so a scene is fully
determined by its seed (see :func:`training.synthetic.render_item`).
"""

import math
from typing import Dict, List, Tuple

import cv2
import numpy as np
from training.synthetic_catalogue import ObjectKind, PartStyle

FIXED_POINT_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
# Object centre range around the image centre, as a fraction of the side: the v2 world's 0.12
# for small objects, down to 0.03 for objects that fill the frame.
MAX_CENTRE_JITTER = 0.12
MIN_CENTRE_JITTER = 0.03
HEAD_OFFSET = np.array([0.0, -24.0])  # actor's head centre from the shoulder, px at 256 px
HEAD_RADIUS = 11.0  # px at 256 px


def render_gt(part_mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """Blur a part mask into an AGD20K-style heat map.

    Args:
        part_mask: ``(H, W)`` bool mask of the acting part.
        sigma_px: Gaussian sigma in pixels.

    Returns:
        ``(H, W)`` uint8 heat map with peak 255.

    Raises:
        ValueError: If the mask is empty.
    """
    if not part_mask.any():
        raise ValueError('the acting part is not visible in the image; cannot draw its GT')
    blurred = cv2.GaussianBlur(part_mask.astype(np.float32), (0, 0), sigmaX=sigma_px)
    return np.round(blurred * (255.0 / blurred.max())).astype(np.uint8)


def draw_clutter(rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw a noisy gradient background covered with random shapes; ``(S, S, 3)`` uint8."""
    colours = rng.uniform(30, 225, (2, 3)).astype(np.float32)  # (2, 3) gradient end colours
    angle = rng.uniform(0, 2 * math.pi)
    coords = np.arange(size, dtype=np.float32) / size
    ys, xs = coords[:, None], coords[None, :]  # (S, 1), (1, S) in [0, 1)
    ramp = 0.5 + 0.5 * np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)))
    image = colours[0] + ramp[..., None] * (colours[1] - colours[0])  # (S, S, 3)
    image += 10.0 * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(8, 16))):
        _draw_random_shape(rng, image, size)
    return image


def _draw_random_shape(rng: np.random.Generator, image: np.ndarray, size: int) -> None:
    """Draw one random circle, rectangle, line or triangle in place."""
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    thickness = -1 if rng.random() < 0.6 else int(rng.integers(2, 6))
    points = rng.integers(0, size, (3, 2))  # (3, 2) x, y
    kind = rng.integers(4)
    if kind == 0:
        radius = int(rng.integers(size // 30, size // 8))
        cv2.circle(image, tuple(int(v) for v in points[0]), radius, colour, thickness, cv2.LINE_AA)
    elif kind == 1:
        corner = points[0] + rng.integers(size // 20, size // 5, 2)
        cv2.rectangle(image, tuple(int(v) for v in points[0]), tuple(int(v) for v in corner),
                      colour, thickness)
    elif kind == 2:
        cv2.line(image, tuple(int(v) for v in points[0]), tuple(int(v) for v in points[1]),
                 colour, max(thickness, 2), cv2.LINE_AA)
    else:
        cv2.fillPoly(image, [points.astype(np.int32)], colour, cv2.LINE_AA)


def draw_object(rng: np.random.Generator, image: np.ndarray, kind: ObjectKind,
                long_side: Tuple[float, float]) -> Dict[str, np.ndarray]:
    """Draw a randomly posed object in place; return its visible part masks.

    Args:
        rng: The item's generator.
        image: ``(S, S, 3)`` uint8 image drawn into.
        kind: What to draw.
        long_side: Range of the object's long side (its [-1, 1] extent in object units) as a
            fraction of the image side; the centre moves less the larger the object, so it
            stays in the frame.
    """
    size = image.shape[0]
    scale_px = rng.uniform(long_side[0] / 2, long_side[1] / 2) * size  # object unit -> pixels
    angle = math.radians(rng.uniform(-kind.max_rotation_deg, kind.max_rotation_deg))
    mirror_x = -1.0 if kind.mirror and rng.random() < 0.5 else 1.0
    jitter = min(MAX_CENTRE_JITTER, max(MIN_CENTRE_JITTER, (1.0 - long_side[1]) / 2))
    centre = rng.uniform(0.5 - jitter, 0.5 + jitter, 2) * size  # (2,) x, y
    rotation = np.array([[math.cos(angle), -math.sin(angle)],
                         [math.sin(angle), math.cos(angle)]])
    linear = scale_px * rotation @ np.diag([mirror_x, 1.0])  # (2, 2) object units -> pixels
    part_labels = np.zeros((size, size), np.int32)  # 0 = background, i + 1 = part i
    for part_id, part in enumerate(kind.parts, start=1):
        mask = np.zeros((size, size), np.uint8)
        for shape in part.shapes:
            contours = [np.round((c @ linear.T + centre) * 2 ** FIXED_POINT_SHIFT).astype(np.int32)
                        for c in _to_contours(shape)]  # each (K, 2) fixed-point x, y
            cv2.fillPoly(mask, contours, 255, cv2.LINE_8, FIXED_POINT_SHIFT)
        covered_ys, covered_xs = np.nonzero(mask)  # (N,) each
        image[covered_ys, covered_xs] = _draw_texture(rng, part, covered_xs, covered_ys)
        part_labels[covered_ys, covered_xs] = part_id
    return {part.name: part_labels == part_id for part_id, part in enumerate(kind.parts, 1)}


def _to_contours(shape: tuple) -> List[np.ndarray]:
    """Turn a shape description into closed contours ``(K, 2)`` in object units."""
    kind, *values = shape
    if kind == 'rect':
        x0, y0, x1, y1 = values
        return [np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], float)]
    if kind == 'poly':
        return [np.array(values[0], float)]
    if kind == 'ring':  # outer and inner contour: fillPoly leaves the hole empty
        centre_x, centre_y, radius_outer, radius_inner = values
        angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)[:, None]  # (48, 1)
        circle = np.hstack([np.cos(angles), np.sin(angles)])  # (48, 2) unit circle
        centre = np.array([centre_x, centre_y])
        return [centre + circle * radius_outer, centre + circle[::-1] * radius_inner]
    raise ValueError(f'unknown shape kind {kind!r}; expected rect, poly or ring')


def _draw_texture(rng: np.random.Generator, part: PartStyle, xs: np.ndarray,
                  ys: np.ndarray) -> np.ndarray:
    """Return the part's jittered colour and texture at pixels ``(xs, ys)``: ``(N, 3)`` uint8."""
    colour = np.clip(np.array(part.colour_bgr) + rng.integers(-20, 21, 3), 0, 255)  # (3,)
    angle = rng.uniform(0, math.pi)
    along = xs * math.cos(angle) + ys * math.sin(angle)  # (N,) pixels along a direction
    if part.texture == 'stripes':
        shade = 0.7 + 0.3 * (np.sin(2 * math.pi * along / rng.uniform(6, 12)) > 0)
    elif part.texture == 'dots':
        period = float(rng.integers(7, 12))
        dist_sq = (xs % period - period / 2) ** 2 + (ys % period - period / 2) ** 2
        shade = np.where(dist_sq < (period / 4) ** 2, 0.55, 1.0)
    elif part.texture == 'gradient':
        shade = 0.75 + 0.3 * np.sin(2 * math.pi * along / rng.uniform(60, 120))
    elif part.texture == 'noise':
        shade = 1.0 + rng.normal(0.0, 0.12, xs.shape)
    else:
        shade = np.ones(xs.shape)
    return np.clip(shade[..., None] * colour, 0, 255).astype(np.uint8)


def draw_actor(rng: np.random.Generator, image: np.ndarray, part_mask: np.ndarray,
               object_mask: np.ndarray, contact: str) -> Tuple[int, int]:
    """Draw a person-like figure touching the acting part in place; return the touch pixel."""
    ys, xs = np.nonzero(part_mask)
    points = np.stack([xs, ys], axis=1).astype(float)  # (N, 2) x, y of the part
    touch = points[np.argmin(((points - points.mean(axis=0)) ** 2).sum(axis=1))]  # (2,)
    object_ys, object_xs = np.nonzero(object_mask)
    object_centre = np.array([object_xs.mean(), object_ys.mean()])  # (2,) x, y
    skin = (np.array([110, 150, 200]) * rng.uniform(0.5, 1.2)).clip(0, 255)
    cloth = rng.integers(0, 256, 3)
    unit = image.shape[0] / 256.0  # pose lengths below are pixels at 256 px
    if contact == 'hips':
        shoulder, hip, hand, legs = _plan_seated_pose(rng, touch, unit)
    else:
        shoulder, hip, hand, legs = _plan_reaching_pose(rng, touch, object_centre, unit)
    shoulder = _keep_head_in_view(shoulder, image.shape[0], unit)
    elbow = (shoulder + hand) / 2 + rng.uniform(-12, 12, 2) * unit
    for start, end, width in legs + [(shoulder, hip, 26), (shoulder, elbow, 10)]:
        _draw_segment(image, start, end, width * unit, cloth)
    _draw_segment(image, elbow, hand, 8 * unit, skin)  # forearm
    _draw_segment(image, hand, hand, 10 * unit, skin)  # hand blob
    head = shoulder + HEAD_OFFSET * unit
    _draw_segment(image, head, head, 2 * HEAD_RADIUS * unit, skin)
    return int(touch[0]), int(touch[1])


def _keep_head_in_view(shoulder: np.ndarray, size: int, unit: float) -> np.ndarray:
    """Move the shoulder just enough that the whole head lies inside the image.

    A large object leaves little room around it, and an exocentric image must show who acts.
    Poses whose head is already in view (every one of the v2 world) are unchanged.
    """
    head = shoulder + HEAD_OFFSET * unit
    margin = HEAD_RADIUS * unit
    return shoulder + np.clip(head, margin, size - 1 - margin) - head


def _plan_reaching_pose(rng: np.random.Generator, touch: np.ndarray, object_centre: np.ndarray,
                        unit: float) -> tuple:
    """Place a standing figure outside the object whose hand rests on ``touch``."""
    away = touch - object_centre  # (2,) reach in from outside the object
    away_angle = math.atan2(away[1], away[0]) + rng.uniform(-0.7, 0.7)
    reach = rng.uniform(60, 85) * unit
    shoulder = touch + reach * np.array([math.cos(away_angle), math.sin(away_angle)])
    hip = shoulder + np.array([0.0, 85.0]) * unit
    legs = [(hip, hip + np.array([-20.0, 70.0]) * unit, 14),
            (hip, hip + np.array([20.0, 70.0]) * unit, 14)]
    return shoulder, hip, touch, legs


def _plan_seated_pose(rng: np.random.Generator, touch: np.ndarray, unit: float) -> tuple:
    """Place a seated figure whose hips rest on ``touch``; the hand rests beside them."""
    hip = touch
    shoulder = hip + np.array([rng.uniform(-8, 8), -75.0]) * unit
    knee = hip + np.array([rng.choice([-1.0, 1.0]) * 45.0, 0.0]) * unit
    legs = [(hip, knee, 14), (knee, knee + np.array([0.0, 50.0]) * unit, 12)]
    return shoulder, hip, hip + np.array([0.0, -10.0]) * unit, legs


def _draw_segment(image: np.ndarray, start: np.ndarray, end: np.ndarray, width: float,
                  colour: np.ndarray) -> None:
    """Draw a thick round-capped segment (a dot when start == end) in place."""
    colour = tuple(int(c) for c in colour)
    start_px = tuple(int(round(v)) for v in start)
    end_px = tuple(int(round(v)) for v in end)
    thickness = max(int(round(width)), 1)
    cv2.line(image, start_px, end_px, colour, thickness, cv2.LINE_AA)
    cv2.circle(image, end_px, thickness // 2, colour, -1, cv2.LINE_AA)
