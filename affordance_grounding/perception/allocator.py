"""Keep freed multi-megabyte buffers in the process, so that the next frame reuses them.

At camera resolution every frame allocates several arrays of a few MB (decoded image, heatmap,
mask, message payloads). glibc hands out blocks above its mmap threshold (128 KiB at start)
as fresh pages from the kernel and unmaps them on free, so each frame pays a page fault per
4 KiB touched. At 1280x720 that was most of the postprocessing and of the message building
(see docs/benchmarks.md, "Postprocessing per frame"). Raising the mmap and trim thresholds
keeps those blocks on the heap for reuse; the cost is memory a frame's worth of buffers that
the process keeps instead of returning.
"""

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # the largest value glibc accepts on 64-bit
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024


def keep_large_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds for this process.

    Returns:
        True when both were set; False where the C library is not glibc (nothing changes).
    """
    if not sys.platform.startswith('linux'):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
