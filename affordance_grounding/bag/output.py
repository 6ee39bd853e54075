"""The output bag: written under a temporary name, in time order, renamed when complete.

An interrupted or failed run leaves no half-written bag under the requested name. Results
are computed a little after their input was read (lookahead, batching), so every write goes
through a small heap and is flushed in receive-time order: players and indexes see a bag
recorded in order.
"""

import heapq
from itertools import count
from pathlib import Path
import shutil
from typing import Dict, List, Optional, Tuple

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}


class BagOutputError(ValueError):
    """The output cannot be written where asked (a user error, one line)."""


def partial_path(final: Path) -> Path:
    """Hidden sibling of ``final`` that holds the output until it is complete."""
    return final.with_name(f'.{final.name}.partial')


def check_free(final: Path, overwrite: bool) -> None:
    """Raise :class:`BagOutputError` if ``final`` exists and may not be replaced."""
    if final.exists() and not overwrite:
        raise BagOutputError(f'{final} exists; choose another output or pass --overwrite')
    if not final.parent.is_dir():
        raise BagOutputError(f'output folder {final.parent} does not exist')


def move_into_place(partial: Path, final: Path) -> None:
    """Replace ``final`` (file or folder) with ``partial`` (same file system: a rename)."""
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()
    partial.rename(final)


def remove_path(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


class OutputBag:
    """A rosbag2 being written; use as a context manager (aborted on an exception)."""

    def __init__(self, final: Path, storage: str, typestore: Typestore, overwrite: bool = False):
        """Check the destination; nothing is created before :meth:`open`."""
        if storage not in STORAGES:
            raise BagOutputError(f'unknown storage {storage!r}; expected one of {list(STORAGES)}')
        check_free(final, overwrite)
        self.final = final
        self.typestore = typestore
        self._staging = partial_path(final)
        # rosbag2 names its data file after the folder: stage it under the final name.
        self._writer = Writer(self._staging / final.name, version=Writer.VERSION_LATEST,
                              storage_plugin=STORAGES[storage])
        self._passthrough: Dict[tuple, object] = {}
        self._heap: List[Tuple[int, int, object, bytes]] = []
        self._order = count()
        self.counts: Dict[str, int] = {}

    def __enter__(self) -> 'OutputBag':
        """Create the staging folder and open the writer."""
        remove_path(self._staging)  # left over from a killed run
        self._staging.mkdir()
        self._writer.open()
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        """Discard everything unless :meth:`commit` ran."""
        if self._staging.exists():
            self._writer.abort()
            remove_path(self._staging)
        return False

    def add_passthrough(self, connection):
        """Return the output connection copying an input connection (its own definition)."""
        ext = connection.ext
        key = (connection.topic, connection.msgtype, ext.serialization_format)
        if key not in self._passthrough:
            definition = {}
            if connection.msgdef.data and connection.digest:
                definition = {'msgdef': connection.msgdef.data, 'rihs01': connection.digest}
            self._passthrough[key] = self._writer.add_connection(
                connection.topic, connection.msgtype, typestore=self.typestore,
                serialization_format=ext.serialization_format,
                offered_qos_profiles=ext.offered_qos_profiles, **definition)
        return self._passthrough[key]

    def add_result(self, topic: str, msgtype: str):
        """Return a new connection for one of the tool's outputs (Jazzy definition)."""
        return self._writer.add_connection(topic, msgtype, typestore=self.typestore)

    def write(self, connection, time_ns: int, data: bytes) -> None:
        """Queue a serialized message; it is written by :meth:`flush`."""
        heapq.heappush(self._heap, (time_ns, next(self._order), connection, data))
        self.counts[connection.topic] = self.counts.get(connection.topic, 0) + 1

    def flush(self, before_ns: Optional[int] = None) -> None:
        """Write the queued messages received before ``before_ns`` (all when None)."""
        while self._heap and (before_ns is None or self._heap[0][0] < before_ns):
            time_ns, _, connection, data = heapq.heappop(self._heap)
            self._writer.write(connection, time_ns, data)

    def commit(self) -> None:
        """Write the rest, finish the bag and move it to its final name."""
        self.flush()
        self._writer.close()
        move_into_place(self._staging / self.final.name, self.final)
        self._staging.rmdir()
