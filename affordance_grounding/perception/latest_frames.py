"""Latest-wins hand-over of frames from several cameras to one worker that batches them.

Per camera it is a latest-wins mailbox (one slot, a new frame replaces and counts an unread
one); :meth:`LatestFrames.take_batch`
waits until ANY camera has a frame and returns the newest frame of every camera that has one.
So the worker never waits for a slow or silent camera: a batch is whatever is fresh. One
condition for all cameras (rather than one mailbox each) is what lets one thread wait on all.
"""

import threading
from typing import Dict, Generic, Optional, TypeVar

Item = TypeVar('Item')


class LatestFrames(Generic[Item]):
    """The newest unread item per camera; ``put`` never blocks, ``take_batch`` waits for one."""

    def __init__(self):
        """Create an empty, open set of slots (cameras appear on their first ``put``)."""
        self._condition = threading.Condition()
        self._items: Dict[str, Item] = {}
        self._closed = False
        self.received_by_camera: Dict[str, int] = {}
        self.dropped_by_camera: Dict[str, int] = {}

    @property
    def received(self) -> int:
        """Items put, all cameras."""
        with self._condition:
            return sum(self.received_by_camera.values())

    @property
    def dropped(self) -> int:
        """Items replaced before the worker took them, all cameras."""
        with self._condition:
            return sum(self.dropped_by_camera.values())

    def put(self, item: Item, camera: str = '') -> None:
        """Store ``camera``'s newest ``item``; an unread one is replaced and counted as dropped."""
        with self._condition:
            if camera in self._items:
                self.dropped_by_camera[camera] = self.dropped_by_camera.get(camera, 0) + 1
            self._items[camera] = item
            self.received_by_camera[camera] = self.received_by_camera.get(camera, 0) + 1
            self._condition.notify()

    def take_batch(self, timeout_s: Optional[float] = None) -> Dict[str, Item]:
        """Remove and return the newest item of every camera that has one.

        Waits up to ``timeout_s`` (None = forever) for the first item, never for a second
        camera. Returns {} when the wait timed out or the slots were closed. The order of the
        result is the order in which cameras first delivered (stable from batch to batch).
        """
        with self._condition:
            self._condition.wait_for(lambda: bool(self._items) or self._closed, timeout_s)
            batch, self._items = self._items, {}
            return batch

    def close(self) -> None:
        """Wake every waiting ``take_batch`` (it returns {}) and refuse to wait from now on."""
        with self._condition:
            self._closed = True
            self._items = {}
            self._condition.notify_all()

    def reopen(self) -> None:
        """Accept and wait for items again after :meth:`close` (the counters are kept)."""
        with self._condition:
            self._closed = False
