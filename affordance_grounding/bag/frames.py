"""Turn a bag's message stream into frames: image, active action, paired depth and intrinsics.

Messages come in bag (receive) time order. The action of a frame is the last accepted action
message received before it, as the live node would have applied it: a command the node would
reject leaves the previous action in force. Depth is paired by header stamp
like the node does (closest within the slop), but offline a depth image recorded shortly
*after* its colour frame counts too: a frame is released only once the bag has moved
:data:`LOOKAHEAD_NS` past it, so no later message could still change its pairing.
"""

from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, List, Optional, Tuple

from affordance_grounding.perception.stamps import stamp_to_ns

LOOKAHEAD_NS = 1_000_000_000


@dataclass
class Frame:
    """One colour image to process and everything it needs.

    Attributes:
        index: Position among the image topic's messages (0-based).
        time_ns: Bag receive time; the outputs are recorded at the same time.
        msg: The deserialized ``Image`` or ``CompressedImage``.
        action: Action command active when the image arrived ('' when none).
        depth: Depth ``Image`` closest in stamp within the slop, or None.
        camera_info: Newest ``CameraInfo`` known when the frame is released, or None.
    """

    index: int
    time_ns: int
    msg: object
    action: str
    depth: Optional[object] = None
    camera_info: Optional[object] = None


class FrameAssembler:
    """Collects the input topics in bag order and releases frames with depth paired."""

    def __init__(self, initial_action: str = '', slop_ns: int = 50_000_000,
                 lookahead_ns: int = LOOKAHEAD_NS,
                 parse: Callable[[str], Optional[object]] = lambda text: text):
        """Start with ``initial_action`` active (the ``--action`` of the command line).

        ``parse(text)`` is None for a command the node would reject (bag ActionParser).
        """
        self.action = initial_action
        self.parse = parse
        self.slop_ns = slop_ns
        self.lookahead_ns = max(lookahead_ns, slop_ns)
        self.camera_info = None
        self._pending: Deque[Frame] = deque()
        self._depth: Deque[Tuple[int, int, object]] = deque()  # (bag time, stamp, msg)
        self._count = 0

    @property
    def oldest_pending_ns(self) -> Optional[int]:
        """Bag time of the oldest frame not yet released, or None."""
        return self._pending[0].time_ns if self._pending else None

    def add_action(self, text: str) -> None:
        """Make an action command active for the images that follow, if it is accepted."""
        if self.parse(text) is not None:
            self.action = text

    def add_camera_info(self, msg) -> None:
        """Remember camera intrinsics (the newest one wins)."""
        self.camera_info = msg

    def add_depth(self, time_ns: int, msg) -> None:
        """Remember a depth image for pairing."""
        self._depth.append((time_ns, stamp_to_ns(msg.header.stamp), msg))

    def add_image(self, time_ns: int, msg) -> Frame:
        """Queue a colour image; returns its (not yet released) frame."""
        frame = Frame(self._count, time_ns, msg, self.action)
        self._count += 1
        self._pending.append(frame)
        return frame

    def release(self, now_ns: Optional[int] = None) -> List[Frame]:
        """Return the frames no later message can change (all of them when ``now_ns`` is None)."""
        released = []
        while self._pending and (now_ns is None
                                 or self._pending[0].time_ns + self.lookahead_ns < now_ns):
            frame = self._pending.popleft()
            frame.depth = self._closest_depth(stamp_to_ns(frame.msg.header.stamp))
            frame.camera_info = self.camera_info
            released.append(frame)
        horizon = self._pending[0].time_ns if self._pending else now_ns
        while horizon is not None and self._depth and \
                self._depth[0][0] + 2 * self.lookahead_ns < horizon:
            self._depth.popleft()  # too early for any frame still to come
        return released

    def _closest_depth(self, stamp_ns: int):
        best = min(self._depth, key=lambda item: abs(item[1] - stamp_ns), default=None)
        return best[2] if best is not None and abs(best[1] - stamp_ns) <= self.slop_ns else None
