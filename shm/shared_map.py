"""A shared memory map of a file that holds no file descriptor.

Python's mmap.mmap keeps a duplicate of the file's descriptor for as long as
the map lives (until Python 3.13's trackfd=False). A reader of 10,000
partitions maps a control block and a segment per partition: 20,000 and more
descriptors, past the usual RLIMIT_NOFILE, for maps that never need one. The
kernel keeps the file alive through the mapping itself, so this maps with
mmap(2) directly (ctypes) and closes nothing but the map.

The bytes are reached through `view`, a memoryview. Whoever slices it must
copy the slice (bytes(view[a:b])) before close(): after munmap a view into
the map would point at nothing. close() releases `view` first, so a use of
it after close() raises ValueError rather than reading freed memory.
"""

from __future__ import annotations

import ctypes
import mmap
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


class SharedMap:
    """MAP_SHARED map of the first `size` bytes of the file open on `fd`.

    The caller may close `fd` right away. `view` is a memoryview of bytes
    (format 'B'), writable only if `writable`.
    """

    __slots__ = ("_address", "_size", "view")

    def __init__(self, fd: int, size: int, writable: bool = False):
        if size <= 0:
            raise ValueError("cannot map an empty file")
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        address = _libc.mmap(None, size, prot, mmap.MAP_SHARED, fd, 0)
        if address is None or address == _MAP_FAILED:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self._address, self._size = address, size
        array = (ctypes.c_char * size).from_address(address)
        view = memoryview(array).cast("B")
        self.view = view if writable else view.toreadonly()

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        """Unmap; idempotent. Views sliced from `view` must be gone by now."""
        if getattr(self, "_address", None) is None:  # closed, or never mapped
            return
        self.view.release()
        _libc.munmap(self._address, self._size)
        self._address = None

    def __del__(self) -> None:
        self.close()
