"""Atomic file writes that respect the umask: the one way model files reach the disk.

Bundles (``.pt``), training states, ONNX graphs, TensorRT engines and their metadata are all
written through :func:`atomic_write`: a temporary file in the destination folder, then
``os.replace`` over the destination, so a crash or Ctrl-C never leaves half a file under the
real name. ``tempfile.mkstemp`` creates the temporary file with mode 0600 whatever the umask;
the finished file gets ``0o666 & ~umask`` (what ``open()`` would have given it) so that a
model written by one user can be read by the robot's service user, as with any other file.
"""

import os
from pathlib import Path
import tempfile
from typing import Callable, Union

PathLike = Union[str, 'os.PathLike[str]']


def read_umask() -> int:
    """Return the process umask without changing it (Linux reads /proc; elsewhere set+reset)."""
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # the only portable query sets it; restore at once
    os.umask(mask)
    return mask


def atomic_write(destination: PathLike, writer: Callable[[Path], None]) -> Path:
    """Have ``writer`` fill a temporary file beside ``destination``, then rename it over.

    Args:
        destination: Final path; its folder is created when missing.
        writer: Called with the temporary path; writes the whole file there (it may open,
            truncate or replace it). When it raises, the temporary file is removed and the
            destination is left as it was.

    Returns:
        The destination path.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=destination.parent, prefix=f'.{destination.name}.',
                                    suffix='.tmp')
    os.close(handle)
    temporary = Path(name)
    try:
        writer(temporary)
        os.chmod(temporary, 0o666 & ~read_umask())
        os.replace(temporary, destination)
    finally:
        if temporary.exists():
            temporary.unlink()
    return destination


def write_bytes_atomically(destination: PathLike, payload) -> Path:
    """Write bytes (or a buffer such as TensorRT's IHostMemory) with :func:`atomic_write`."""
    def write(path: Path) -> None:
        with path.open('wb') as stream:
            stream.write(payload)

    return atomic_write(destination, write)
