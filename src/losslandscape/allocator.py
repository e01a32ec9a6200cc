"""glibc keeps freed memory for reuse: CPU scans do not page-fault their activations in at every point.

A scan allocates and frees the same activation tensors at every grid point. glibc serves large
blocks with fresh pages from the OS (above its adaptive mmap threshold) and returns freed memory at
the top of the heap (above its trim threshold), so a forward pass can page-fault all its
activations in again: the SmallCNN on the 1,797 digits took 4.2 ms per pass or 9.7 ms depending on
the allocator's history, in the same process (benchmarks/README.md). Fixed thresholds end that; the
memory stays with the process, as PyTorch's CUDA caching allocator keeps GPU memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # the largest value glibc accepts on 64-bit systems
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; ``False`` where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (e.g. musl) has no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
