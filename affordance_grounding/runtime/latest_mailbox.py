"""Latest-wins hand-over of frames from a callback thread to one worker thread.

A queue would let lag grow whenever inference is slower than the camera (the most common
complaint about perception nodes): the mailbox holds at most one item, a new item replaces an
unread one, and every replaced item is counted as dropped. ``queue.Queue(maxsize=1)`` cannot
replace its item atomically, hence this small class.
"""

import threading
from typing import Generic, Optional, TypeVar

Item = TypeVar('Item')


class LatestMailbox(Generic[Item]):
    """Holds the newest item; ``put`` never blocks, ``take`` waits for one."""

    def __init__(self):
        """Create an empty, open mailbox."""
        self._condition = threading.Condition()
        self._item: Optional[Item] = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: Item) -> None:
        """Store ``item``, replacing (and counting as dropped) an unread one."""
        with self._condition:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.received += 1
            self._condition.notify()

    def take(self, timeout_s: Optional[float] = None) -> Optional[Item]:
        """Remove and return the newest item, waiting up to ``timeout_s`` (None = forever).

        Returns:
            The item, or None when the wait timed out or the mailbox was closed.
        """
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake every waiting ``take`` (it returns None) and refuse to wait from now on."""
        with self._condition:
            self._closed = True
            self._item = None
            self._condition.notify_all()

    def reopen(self) -> None:
        """Accept and wait for items again after :meth:`close` (the counters are kept)."""
        with self._condition:
            self._closed = False
