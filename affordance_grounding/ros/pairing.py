"""Pair a colour frame with the depth frame closest in stamp (approximate time sync).

message_filters' ApproximateTimeSynchronizer is not installable everywhere and would tie the
colour path to depth arrivals; the node only needs "the depth image nearest this colour
stamp, if within the slop", which a short buffer answers.
"""

from collections import deque
import threading
from typing import Deque, Generic, Optional, Tuple, TypeVar

Item = TypeVar('Item')


class StampedBuffer(Generic[Item]):
    """The last ``capacity`` items with their stamps (nanoseconds); thread-safe."""

    def __init__(self, capacity: int = 30):
        """Keep at most ``capacity`` items (one second of a 30 Hz depth stream by default)."""
        self._items: Deque[Tuple[int, Item]] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, stamp_ns: int, item: Item) -> None:
        """Remember one item."""
        with self._lock:
            self._items.append((stamp_ns, item))

    def closest(self, stamp_ns: int, slop_ns: int) -> Optional[Item]:
        """Return the item whose stamp is nearest ``stamp_ns``, if at most ``slop_ns`` away."""
        with self._lock:
            if not self._items:
                return None
            best_stamp, best = min(self._items, key=lambda pair: abs(pair[0] - stamp_ns))
        return best if abs(best_stamp - stamp_ns) <= slop_ns else None

    def clear(self) -> None:
        """Forget every item."""
        with self._lock:
            self._items.clear()
