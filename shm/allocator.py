"""glibc's allocator, told to keep the memory that batches are made of.

Record batches are allocated and freed at a MiB a time: the producer encodes
one, ZeroMQ receives one into a fresh message, a fetch reply is built. glibc
serves such sizes from fresh mmap()s, or from a heap top it trims back to
the kernel as soon as more than twice its adaptive threshold lies free, so
every new MiB is first touched page by page: 256 page faults, each zeroing a
page. Measured here, encoding a 1 MiB batch of 1 KiB records took 1.1 ms
with glibc's defaults and 0.33 ms with the thresholds below (the faults cost
more than the encoding). Raising both thresholds keeps freed batches in the
heap for the next one; what is kept is bounded by the process's own peak
(the producer's buffer.memory, a worker's in-flight requests).

Setting either threshold turns glibc's adaptive threshold off, which is the
point: the adaptive one lowers the trim threshold to 2x the last freed
mmap()ed chunk. RINGLOG_MALLOC_TUNING=0 leaves glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # <malloc.h>: free heap top kept before trimming
M_MMAP_THRESHOLD = -3  # <malloc.h>: allocations at least this big get their own mmap()
MMAP_THRESHOLD = 32 << 20  # glibc's largest adaptive value on 64-bit
TRIM_THRESHOLD = 128 << 20

_tuned = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False where
    there is no glibc (musl, other systems) or the environment says no."""
    global _tuned
    if _tuned:
        return True
    if os.environ.get("RINGLOG_MALLOC_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned
