"""Pair a colour frame with the depth frame or the detections closest in stamp.

message_filters' ApproximateTimeSynchronizer is not installable everywhere and would tie the
colour path to depth arrivals; the node only needs "the depth image nearest this colour
stamp, if within the slop", which a short buffer answers. Detections are different: a
detector answers an image some time after it, so :class:`DetectionPairer` keeps the images
that wait for their boxes and completes a pair on whichever of the two arrives second.
"""

from collections import deque, OrderedDict
from dataclasses import dataclass
import threading
from typing import Deque, Generic, List, Optional, Tuple, TypeVar

from affordance_grounding.perception.detections import NO_DETECTIONS, unpaired_message
from affordance_grounding.perception.stamps import NS_PER_S, stamp_to_ns

Item = TypeVar('Item')
# An image waits this long (by image stamps) for its detections before it is given up.
DETECTION_WAIT_S = 1.0


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

    def nearest(self, stamp_ns: int) -> Optional[Tuple[int, Item]]:
        """Return (stamp, item) nearest ``stamp_ns`` whatever the distance; None when empty."""
        with self._lock:
            if not self._items:
                return None
            return min(self._items, key=lambda pair: abs(pair[0] - stamp_ns))

    def closest(self, stamp_ns: int, slop_ns: int) -> Optional[Item]:
        """Return the item whose stamp is nearest ``stamp_ns``, if at most ``slop_ns`` away."""
        pair = self.nearest(stamp_ns)
        return pair[1] if pair is not None and abs(pair[0] - stamp_ns) <= slop_ns else None

    def take(self, stamp_ns: int, slop_ns: int) -> Optional[Item]:
        """Like :meth:`closest`, and forget the item returned (it is paired once)."""
        with self._lock:
            if not self._items:
                return None
            best = min(self._items, key=lambda pair: abs(pair[0] - stamp_ns))
            if abs(best[0] - stamp_ns) > slop_ns:
                return None
            self._items.remove(best)
            return best[1]

    def clear(self) -> None:
        """Forget every item."""
        with self._lock:
            self._items.clear()


@dataclass(frozen=True)
class PairedFrame:
    """A colour image and the ``Detection2DArray`` paired with it by stamp."""

    image: object
    detections: object


Problems = List[Tuple[str, str]]


class DetectionPairer:
    """One camera's images waiting for detections, and detections waiting for images.

    An image is given up (a counted ``no_detections``, with the stamps that did not match)
    once a detection stamped after it beyond the slop has arrived (detectors answer in order,
    so its own will not come), or once it is :data:`DETECTION_WAIT_S` older than the newest
    image (no detector, or stamps that never match). Thread-safe.
    """

    def __init__(self, capacity: int = 30):
        """Keep at most ``capacity`` waiting images and detections."""
        self.capacity = capacity
        self.detections: StampedBuffer = StampedBuffer(capacity)
        self._images: 'OrderedDict[int, object]' = OrderedDict()
        self._lock = threading.Lock()

    def add_image(self, msg, slop_s: float) -> Tuple[Optional[PairedFrame], Problems]:
        """Pair an image with waiting detections, or keep it waiting; returns (pair, problems)."""
        stamp = stamp_to_ns(msg.header.stamp)
        detections = self.detections.take(stamp, int(slop_s * NS_PER_S))
        if detections is not None:
            return PairedFrame(msg, detections), []
        with self._lock:
            self._images[stamp] = msg
            cutoff = stamp - int(DETECTION_WAIT_S * NS_PER_S)
            return None, self._give_up(lambda waiting: waiting < cutoff, slop_s)

    def add_detections(self, msg, slop_s: float) -> Tuple[Optional[PairedFrame], Problems]:
        """Pair detections with a waiting image, or keep them; returns (pair, problems)."""
        stamp, slop_ns = stamp_to_ns(msg.header.stamp), int(slop_s * NS_PER_S)
        with self._lock:
            nearest = min(self._images, key=lambda waiting: abs(waiting - stamp), default=None)
            paired = None
            if nearest is not None and abs(nearest - stamp) <= slop_ns:
                paired = PairedFrame(self._images.pop(nearest), msg)
            else:
                self.detections.add(stamp, msg)
            return paired, self._give_up(lambda waiting: waiting < stamp - slop_ns, slop_s)

    def _give_up(self, expired, slop_s: float) -> Problems:
        """Drop the images ``expired(stamp)`` says will get no detections (and any surplus)."""
        gone = [stamp for stamp in self._images if expired(stamp)]
        kept = [stamp for stamp in self._images if not expired(stamp)]
        gone += kept[:max(0, len(kept) - self.capacity)]  # the oldest beyond the capacity
        problems = []
        for stamp in gone:
            del self._images[stamp]
            nearest = self.detections.nearest(stamp)
            problems.append((NO_DETECTIONS, unpaired_message(
                stamp, None if nearest is None else nearest[0], slop_s)))
        return problems
