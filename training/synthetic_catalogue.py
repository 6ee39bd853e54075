"""What the synthetic world contains: objects made of parts, and which part each action uses.

Two catalogues share one label set. The Seen objects appear in the training images of both
settings and in the Seen test set; the Unseen objects appear only in the Unseen test set, as
AGD20K's Unseen setting tests object classes the head never trained on. Every Unseen object
is a new kind of a Seen one (a cleaver for a knife, a mug for a cup, ...), and each action
acts on the analogous part, so what transfers is "cut_with acts on a blade", not the look of
one object.

A shape is ``('rect', x0, y0, x1, y1)``, ``('poly', points)`` or ``('ring', cx, cy, r_outer,
r_inner)`` in object units: an object spans about [-1, 1] in x and y, y pointing down.
"""

from dataclasses import dataclass
from typing import Dict, Tuple

SETTINGS = ('Seen', 'Unseen')


@dataclass(frozen=True)
class PartStyle:
    """One part of an object: its look and its geometry in object units.

    Attributes:
        name: Part name, unique within the object (``blade``, ``handle``, ...).
        colour_bgr: Base colour before per-image jitter.
        texture: ``solid``, ``stripes``, ``dots``, ``gradient`` or ``noise``.
        shapes: Filled shapes making up the part, drawn in order.
    """

    name: str
    colour_bgr: Tuple[int, int, int]
    texture: str
    shapes: Tuple[tuple, ...]


@dataclass(frozen=True)
class ObjectKind:
    """An object class: parts in drawing order (later parts occlude earlier ones).

    Attributes:
        parts: The parts, back to front.
        max_rotation_deg: In-plane rotation range (+-) of a random instance.
        mirror: Whether instances may be mirrored left-right.
    """

    parts: Tuple[PartStyle, ...]
    max_rotation_deg: float
    mirror: bool


OBJECTS: Dict[str, ObjectKind] = {
    'knife': ObjectKind(parts=(
        PartStyle('handle', (30, 60, 110), 'stripes', (('rect', -1.0, -0.13, -0.2, 0.13),)),
        PartStyle('blade', (200, 200, 195), 'gradient', (
            ('poly', ((-0.2, -0.16), (0.85, -0.16), (1.0, -0.05), (0.6, 0.16), (-0.2, 0.16))),)),
    ), max_rotation_deg=180.0, mirror=True),
    'scissors': ObjectKind(parts=(
        PartStyle('handles', (40, 40, 200), 'solid', (
            ('ring', -0.62, -0.4, 0.32, 0.19), ('ring', -0.62, 0.4, 0.32, 0.19),
            ('poly', ((-0.4, -0.3), (-0.05, -0.06), (-0.05, 0.06), (-0.45, -0.16))),
            ('poly', ((-0.4, 0.3), (-0.05, 0.06), (-0.05, -0.06), (-0.45, 0.16))))),
        PartStyle('blades', (185, 180, 170), 'gradient', (
            ('poly', ((-0.1, 0.08), (1.0, -0.14), (1.0, -0.04), (-0.1, 0.2))),
            ('poly', ((-0.1, -0.08), (1.0, 0.14), (1.0, 0.04), (-0.1, -0.2))))),
    ), max_rotation_deg=180.0, mirror=False),
    'cup': ObjectKind(parts=(
        PartStyle('handle', (60, 160, 230), 'solid', (('ring', 0.45, 0.0, 0.42, 0.25),)),
        PartStyle('body', (170, 90, 40), 'dots', (
            ('poly', ((-0.5, -0.7), (0.5, -0.7), (0.4, 0.85), (-0.4, 0.85))),)),
        PartStyle('rim', (235, 235, 235), 'solid', (('rect', -0.56, -0.9, 0.56, -0.68),)),
    ), max_rotation_deg=25.0, mirror=True),
    'bottle': ObjectKind(parts=(
        PartStyle('body', (60, 150, 40), 'noise', (
            ('rect', -0.46, -0.05, 0.46, 1.0),
            ('poly', ((-0.46, -0.04), (0.46, -0.04), (0.24, -0.34), (-0.24, -0.34))))),
        PartStyle('neck', (120, 200, 120), 'stripes', (('rect', -0.24, -0.76, 0.24, -0.3),)),
        PartStyle('cap', (30, 30, 210), 'stripes', (('rect', -0.3, -1.0, 0.3, -0.72),)),
    ), max_rotation_deg=30.0, mirror=False),
    'chair': ObjectKind(parts=(
        PartStyle('legs', (30, 50, 80), 'solid', (
            ('rect', -0.62, 0.1, -0.48, 1.0), ('rect', 0.48, 0.1, 0.62, 1.0))),
        PartStyle('back', (60, 90, 150), 'stripes', (('rect', -0.64, -1.0, -0.46, 0.0),)),
        PartStyle('seat', (160, 60, 140), 'dots', (('rect', -0.68, -0.04, 0.68, 0.14),)),
    ), max_rotation_deg=12.0, mirror=True),
}

# Test-only object kinds of the Unseen setting: new shapes and colours, analogous parts.
UNSEEN_OBJECTS: Dict[str, ObjectKind] = {
    'cleaver': ObjectKind(parts=(
        PartStyle('handle', (20, 20, 20), 'noise', (('rect', -1.0, -0.1, -0.35, 0.1),)),
        PartStyle('blade', (160, 170, 180), 'gradient', (
            ('poly', ((-0.35, -0.45), (0.95, -0.45), (0.95, 0.3), (-0.35, 0.3))),)),
    ), max_rotation_deg=180.0, mirror=True),
    'mug': ObjectKind(parts=(
        PartStyle('handle', (40, 40, 160), 'stripes', (
            ('rect', 0.55, -0.45, 0.95, -0.3), ('rect', 0.8, -0.45, 0.95, 0.45),
            ('rect', 0.55, 0.3, 0.95, 0.45))),
        PartStyle('body', (200, 200, 60), 'stripes', (('rect', -0.6, -0.6, 0.6, 0.8),)),
        PartStyle('rim', (80, 80, 80), 'solid', (('rect', -0.64, -0.78, 0.64, -0.6),)),
    ), max_rotation_deg=25.0, mirror=True),
    'jug': ObjectKind(parts=(
        PartStyle('body', (150, 60, 160), 'dots', (
            ('poly', ((-0.3, -0.35), (0.3, -0.35), (0.7, 0.2), (0.55, 1.0), (-0.55, 1.0),
                      (-0.7, 0.2))),)),
        PartStyle('neck', (200, 150, 90), 'solid', (('rect', -0.24, -0.76, 0.24, -0.33),)),
        PartStyle('cap', (0, 140, 255), 'dots', (('rect', -0.32, -1.0, 0.32, -0.72),)),
    ), max_rotation_deg=30.0, mirror=False),
    'stool': ObjectKind(parts=(
        PartStyle('legs', (90, 90, 40), 'stripes', (
            ('poly', ((-0.5, 0.0), (-0.36, 0.0), (-0.7, 1.0), (-0.84, 1.0))),
            ('poly', ((0.36, 0.0), (0.5, 0.0), (0.84, 1.0), (0.7, 1.0))),
            ('rect', -0.07, 0.0, 0.07, 1.0))),
        PartStyle('seat', (50, 120, 200), 'noise', (('rect', -0.75, -0.2, 0.75, 0.05),)),
    ), max_rotation_deg=12.0, mirror=True),
}

# Affordance (AGD20K label) -> Seen object -> acting part.
AFFORDANCE_PARTS: Dict[str, Dict[str, str]] = {
    'cut_with': {'knife': 'blade', 'scissors': 'blades'},
    'drink_with': {'cup': 'rim'},
    'hold': {'knife': 'handle', 'cup': 'handle', 'scissors': 'handles'},
    'open': {'bottle': 'cap'},
    'pour': {'bottle': 'neck'},
    'sit_on': {'chair': 'seat'},
}
# Affordance -> Unseen object -> acting part (the part analogous to the Seen one).
UNSEEN_AFFORDANCE_PARTS: Dict[str, Dict[str, str]] = {
    'cut_with': {'cleaver': 'blade'},
    'drink_with': {'mug': 'rim'},
    'hold': {'cleaver': 'handle', 'mug': 'handle'},
    'open': {'jug': 'cap'},
    'pour': {'jug': 'neck'},
    'sit_on': {'stool': 'seat'},
}
# Body part of the exocentric actor touching the acting part (default: the hand).
BODY_CONTACT: Dict[str, str] = {'sit_on': 'hips'}
LABELS: Tuple[str, ...] = tuple(sorted(AFFORDANCE_PARTS))


def find_object(name: str) -> ObjectKind:
    """Return the Seen or Unseen object kind called ``name``."""
    kind = OBJECTS.get(name) or UNSEEN_OBJECTS.get(name)
    if kind is None:
        raise ValueError(f'unknown object {name!r}; known: {sorted(OBJECTS)} (Seen), '
                         f'{sorted(UNSEEN_OBJECTS)} (Unseen)')
    return kind


def find_acting_part(affordance: str, object_name: str) -> str:
    """Return the part ``affordance`` acts on for a Seen or Unseen object."""
    for table in (AFFORDANCE_PARTS, UNSEEN_AFFORDANCE_PARTS):
        part = table.get(affordance, {}).get(object_name)
        if part is not None:
            return part
    raise ValueError(f'no acting part for affordance {affordance!r} on object '
                     f'{object_name!r}; valid pairs: {AFFORDANCE_PARTS} (Seen), '
                     f'{UNSEEN_AFFORDANCE_PARTS} (Unseen)')


def object_index(name: str) -> int:
    """Stable integer of an object for seeding: Seen objects first, so old seeds stay valid."""
    seen, unseen = sorted(OBJECTS), sorted(UNSEEN_OBJECTS)
    return seen.index(name) if name in OBJECTS else len(seen) + unseen.index(name)


def pairs_of_test_set(setting: str) -> Dict[str, Dict[str, str]]:
    """Affordance -> object -> part table of a setting's test set."""
    if setting not in SETTINGS:
        raise ValueError(f'unknown setting {setting!r}; expected one of {SETTINGS}')
    return AFFORDANCE_PARTS if setting == 'Seen' else UNSEEN_AFFORDANCE_PARTS
