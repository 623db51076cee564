"""Sparse offset and time indexes beside each segment, as memory-mapped files.

Both are arrays of fixed-size big-endian entries, relative to the segment's
base offset, in the spirit of Kafka's ``.index`` and ``.timeindex``::

    offset index entry (8 bytes)          time index entry (12 bytes)
    +-----------------+--------------+    +-------------------+-----------------+
    | relative offset | position     |    | max timestamp so  | relative offset |
    | int32           | int32        |    | far, int64 ms     | int32           |
    +-----------------+--------------+    +-------------------+-----------------+

Offset index files are created sparse at their largest size and mapped
shared, so a reader in another process sees entries as they are added. They
are never shrunk, even when their segment closes: a reader's map past a new,
smaller end of file would fault (SIGBUS). Unused entries are zero, and since
the first batch of a segment (relative offset 0) never gets an entry, the
entries in use are exactly the prefix with a nonzero relative offset.

Time index files are only read by the writer; they are trimmed to their
entries when the segment closes, so their size gives their entry count.

Indexes are hints, never the truth: every entry handed out is checked against
the batch header it points at, and a file that fails is rebuilt from the log.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from shm.files import zero_range

OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")


def data_end(fd: int) -> int:
    """Where the file's written prefix ends (SEEK_HOLE): entries are written
    from the start and cut with punched holes, so none lies beyond. The file
    size where the filesystem cannot tell."""
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE)
    except OSError:
        return os.fstat(fd).st_size


class _EntryFile:
    """A file of fixed-size entries, written with pwrite and read through a shared map.

    Entries are written with pwrite, never stored through the map: on a full
    disk a store into a sparse page of a map kills the process with SIGBUS,
    while pwrite fails with ENOSPC. An index is only a hint, so a failed
    entry write just stops indexing this segment (lookups walk headers
    instead) until the next open rebuilds it.

    New entries wait in memory and go to the file in one pwrite per
    `write_pending()` (the log's flush) or per PENDING_LIMIT entries, so the
    append path makes no system call for its index.
    """

    entry: struct.Struct
    PENDING_LIMIT = 64

    def __init__(self, path: Path, capacity: int):
        self.path = path
        self._open_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        self.written = size // self.entry.size  # entries in the file
        if size < capacity * self.entry.size:
            os.ftruncate(self._fd, capacity * self.entry.size)
            size = capacity * self.entry.size
        self.capacity = size // self.entry.size
        self.degraded = False
        self._pending: list[tuple[int, int]] = []
        # Mapped on the first read of a written entry, not before: the append
        # path needs only last(), kept here, so the map (and the descriptor
        # Python's mmap holds for it) exists only where entries are looked up.
        self._size = size
        self._map: mmap.mmap | None = None
        self._last_written: tuple[int, int] | None = None

    @property
    def _fd(self) -> int:
        """The file's descriptor, reopened on demand after release_fd()."""
        if self._open_fd < 0:
            self._open_fd = os.open(self.path, os.O_RDWR)
        return self._open_fd

    def release_fd(self) -> None:
        """Close the descriptor of a closed segment's file; its map keeps its own.

        Halves the descriptors a log of many segments holds open."""
        self.write_pending()
        if self._open_fd >= 0:
            os.close(self._open_fd)
            self._open_fd = -1

    @property
    def count(self) -> int:
        return self.written + len(self._pending)

    def _mapped(self) -> mmap.mmap | None:
        if self._map is None and self._size:
            reopened = self._open_fd < 0
            self._map = mmap.mmap(self._fd, self._size, mmap.MAP_SHARED, mmap.PROT_READ)
            if reopened:  # the map keeps its own descriptor: do not hold a second one
                os.close(self._open_fd)
                self._open_fd = -1
        return self._map

    def release_map(self) -> None:
        """Unmap until the next lookup (an idle partition holds no map, no descriptor)."""
        self._close_map()

    def _get(self, i: int) -> tuple[int, int]:
        if i >= self.written:
            return self._pending[i - self.written]
        return self.entry.unpack_from(self._mapped(), i * self.entry.size)

    def append(self, a: int, b: int) -> bool:
        """Add an entry; False when the file is full (the caller rolls the segment)."""
        if self.count >= self.capacity:
            return False
        if not self.degraded:
            self._pending.append((a, b))
            if len(self._pending) >= self.PENDING_LIMIT:
                self.write_pending()
        return True

    def write_pending(self) -> None:
        """Put the waiting entries in the file, one pwrite for all of them."""
        if not self._pending:
            return
        pack = self.entry.pack
        data = b"".join(pack(a, b) for a, b in self._pending)
        try:
            os.pwrite(self._fd, data, self.written * self.entry.size)
        except OSError:
            self.degraded = True  # disk full or failing: stop indexing, keep appending
        else:
            self.written += len(self._pending)
            self._last_written = self._pending[-1]
        self._pending.clear()

    def entries(self) -> list[tuple[int, int]]:
        return [self._get(i) for i in range(self.count)]

    def last(self) -> tuple[int, int] | None:
        if self._pending:
            return self._pending[-1]
        if self.written and self._last_written is None:
            self._last_written = self._get(self.written - 1)
        return self._last_written if self.written else None

    def truncate_entries(self, count: int) -> None:
        """Forget entries from `count` on, zeroing them so readers stop there too."""
        self.write_pending()
        if count >= self.written:
            return
        start, end = count * self.entry.size, self.written * self.entry.size
        zero_range(self._fd, start, end - start)
        self.written = count
        self._last_written = None

    def clear(self) -> None:
        """Zero the whole file in place (readers may map it) and forget every entry."""
        zero_range(self._fd, 0, os.fstat(self._fd).st_size)
        self._pending.clear()
        self.written = 0
        self._last_written = None
        self.degraded = False

    def trim(self) -> None:
        """Shrink the file to its entries and make it durable: the segment is closing."""
        self.write_pending()
        self._close_map()
        os.ftruncate(self._fd, self.written * self.entry.size)
        os.fsync(self._fd)
        self.capacity = self.written
        self._size = self.written * self.entry.size

    def extend(self, capacity: int) -> None:
        """Grow a trimmed file back to `capacity` entries: the segment is active again."""
        if capacity <= self.capacity:
            return
        self._close_map()
        os.ftruncate(self._fd, capacity * self.entry.size)
        self.capacity = capacity
        self._size = capacity * self.entry.size

    def flush(self) -> None:
        self.write_pending()
        os.fsync(self._fd)

    def _close_map(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def close(self) -> None:
        self.release_fd()
        self._close_map()


class OffsetIndex(_EntryFile):
    """Maps relative offsets to byte positions, one entry per ~index_interval bytes."""

    entry = OFFSET_ENTRY

    def __init__(self, path: Path, capacity: int):
        super().__init__(path, capacity)
        if not self._size or not self.written:  # a new (or empty) file holds no entry
            self.written = 0
        else:
            self.written = self.published_count(self._mapped(), data_end(self._fd))

    def trim(self) -> None:
        """Offset indexes keep their size (see the module docstring); only flush."""
        self.flush()

    def floor_entries(self, relative_offset: int) -> list[tuple[int, int]]:
        """Entries at or below `relative_offset`, nearest first (the caller verifies them)."""
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            if self._get(mid)[0] <= relative_offset:
                lo = mid + 1
            else:
                hi = mid
        return [self._get(i) for i in range(lo - 1, max(lo - 4, -1), -1)]

    def is_well_formed(self, segment_size: int) -> bool:
        """Cheap structural check: strictly increasing and inside the segment."""
        rel_prev, pos_prev = -1, -1
        for rel, pos in self.entries():
            if rel <= rel_prev or pos <= pos_prev or pos >= segment_size:
                return False
            rel_prev, pos_prev = rel, pos
        return True

    @staticmethod
    def published_count(index_map: mmap.mmap, limit_bytes: int | None = None) -> int:
        """Entries in use in a shared file: the prefix with nonzero relative offsets.

        `limit_bytes` bounds the search where the caller knows no entry lies
        beyond (data_end(), or the log's size): reading an unused page of the
        sparse file through the map would fault it, and read-ahead around it,
        into this process's RSS, about 400 KiB per index searched whole.
        """
        size = len(index_map) if limit_bytes is None else min(len(index_map), limit_bytes)
        n = size // OFFSET_ENTRY.size
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            if OFFSET_ENTRY.unpack_from(index_map, mid * OFFSET_ENTRY.size)[0] > 0:
                lo = mid + 1
            else:
                hi = mid
        return lo


class TimeIndex(_EntryFile):
    """Maps the largest timestamp seen so far to the offset of the batch that holds it."""

    entry = TIME_ENTRY

    def floor_below(self, timestamp: int) -> tuple[int, int] | None:
        """The last entry with a timestamp strictly below `timestamp`, if any.

        Every batch up to that entry's offset has a max timestamp below the
        target, so a search for the first batch at or above it starts there.
        """
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            if self._get(mid)[0] < timestamp:
                lo = mid + 1
            else:
                hi = mid
        return self._get(lo - 1) if lo else None

    def is_well_formed(self, max_relative_offset: int) -> bool:
        """Cheap structural check: timestamps never fall, offsets increase and
        stay in range. (Equal timestamps occur where a closing entry stays
        behind in a segment that took appends again.)"""
        ts_prev, rel_prev = None, -1
        for ts, rel in self.entries():
            if (ts_prev is not None and ts < ts_prev) or rel < rel_prev:
                return False
            if rel > max_relative_offset:
                return False
            ts_prev, rel_prev = ts, rel
        return True
