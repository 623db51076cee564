"""One segment of a partition log: a preallocated, memory-mapped file of record batches.

Files of a segment whose first batch has offset 42, in the log's directory::

    00000000000000000042.log        record batches back to back, then zeros
    00000000000000000042.index      OffsetIndex entries
    00000000000000000042.timeindex  TimeIndex entries

The active segment's .log is created sparse at `segment_bytes` so it can be
mapped once at full size; its valid data ends where the first batch length
reads zero. Closing (rolling) a segment trims the .log and the .timeindex to
their data; the .index keeps its size (see shm.index).

The functions at module level work on any buffer (a writer's or a reader's
map) and are the one place where batches are found and collected for reads.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from shm.errors import CorruptRecordError, KafkaStorageError
from shm.files import fsync_directory, zero_range
from shm.index import OffsetIndex, TimeIndex
from shm.record_batch import HEADER_SIZE, BatchHeader, parse_header, validate_batch
from shm.shared_map import SharedMap

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
IOV_MAX = 1024

_LENGTH = struct.Struct(">i")
_BASE_AND_LENGTH = struct.Struct(">qi")
_LAST_OFFSET_DELTA = struct.Struct(">i")
_LAST_OFFSET_DELTA_AT = 23


def segment_name(base_offset: int) -> str:
    """Kafka's naming: the base offset zero-padded to 20 digits."""
    return f"{base_offset:020d}"


def parse_segment_name(name: str) -> int | None:
    stem, dot, suffix = name.partition(".")
    if len(stem) == 20 and stem.isdigit() and dot and "." + suffix == LOG_SUFFIX:
        return int(stem)
    return None


# --- finding batches in a buffer -------------------------------------------------


def batch_bounds(buf: memoryview | bytes, pos: int) -> tuple[int, int, int]:
    """(base offset, last offset, size) of the batch at `pos`, from its header alone."""
    base, length = _BASE_AND_LENGTH.unpack_from(buf, pos)
    (last_delta,) = _LAST_OFFSET_DELTA.unpack_from(buf, pos + _LAST_OFFSET_DELTA_AT)
    return base, base + last_delta, length + 12


def find_batch(buf, start: int, end: int, offset: int) -> int | None:
    """Position of the batch holding `offset`, scanning headers from `start` (< end)."""
    pos = start
    while pos + HEADER_SIZE <= end:
        _, last, size = batch_bounds(buf, pos)
        if size < HEADER_SIZE:
            return None
        if last >= offset:
            return pos
        pos += size
    return None


def collect_batches(
    buf, pos: int, end: int, max_bytes: int, limit_offset: int
) -> tuple[int, int]:
    """(end position, next offset) of whole batches from `pos` that fit in
    `max_bytes` and lie below `limit_offset` (the high watermark). The first
    batch is taken whole, however large, so a consumer always makes progress
    (KIP-74)."""
    stop, next_offset = pos, -1
    while stop + HEADER_SIZE <= end:
        base, last, size = batch_bounds(buf, stop)
        if base >= limit_offset or size < HEADER_SIZE or stop + size > end:
            break
        if stop > pos and stop + size - pos > max_bytes:
            break
        stop += size
        next_offset = last + 1
    return stop, next_offset


def iter_headers(buf, start: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of each batch between two batch boundaries, unchecked."""
    pos = start
    while pos + HEADER_SIZE <= end:
        header = parse_header(buf, pos)
        if header.size < HEADER_SIZE or pos + header.size > end:
            return
        yield pos, header
        pos += header.size


# --- the segment -----------------------------------------------------------------------


class Segment:
    """A segment as its writer sees it: files, map, indexes and where its data ends."""

    def __init__(self, directory: Path, base_offset: int, index_interval_bytes: int):
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        stem = directory / segment_name(base_offset)
        self.log_path = stem.with_suffix(LOG_SUFFIX)
        self.index_path = stem.with_suffix(INDEX_SUFFIX)
        self.time_index_path = stem.with_suffix(TIME_INDEX_SUFFIX)
        self.size = 0  # bytes of valid batches
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.first_batch_timestamp: int | None = None
        self._bytes_since_index = 0
        self.closed = False  # trimmed to its data; takes no appends
        self._open_fd = -1
        self._map: SharedMap | None = None  # holds no descriptor (shm.shared_map)
        self.offset_index: OffsetIndex
        self.time_index: TimeIndex

    # opening ------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base_offset: int, segment_bytes: int,
               index_interval_bytes: int) -> Segment:
        """A new, empty, active segment; its files exist durably when this returns."""
        segment = cls(directory, base_offset, index_interval_bytes)
        for path in (segment.log_path, segment.index_path, segment.time_index_path):
            path.unlink(missing_ok=True)
        segment._open_files(segment_bytes, active=True)
        os.fsync(segment._fd)
        fsync_directory(directory)
        return segment

    @classmethod
    def open_closed(cls, directory: Path, base_offset: int, index_interval_bytes: int) -> Segment:
        """A closed segment: its file size is its data; its indexes are checked."""
        segment = cls(directory, base_offset, index_interval_bytes)
        segment._open_files(0, active=False)
        segment.closed = True
        segment.size = os.fstat(segment._fd).st_size
        if not segment._indexes_look_right():
            segment.rebuild_indexes()
        segment._load_tail_state()
        segment.release_fds()
        return segment

    @classmethod
    def recover_active(cls, directory: Path, base_offset: int, segment_bytes: int,
                       index_interval_bytes: int) -> Segment:
        """The last segment after an unclean stop: keep the intact prefix, cut the rest.

        Scans batch by batch with full validation and stops at the first zero
        length, short batch, bad CRC or offset discontinuity; everything from
        there on is zeroed, and both indexes are rebuilt from the scan.
        """
        segment = cls(directory, base_offset, index_interval_bytes)
        segment._open_files(segment_bytes, active=True)
        segment.offset_index.clear()
        segment.time_index.clear()
        buffer = segment.buffer
        end = len(buffer)
        view = memoryview(buffer)
        try:
            pos = 0
            while pos + HEADER_SIZE <= end:
                if _LENGTH.unpack_from(view, pos + 8)[0] == 0:
                    break
                try:
                    header = validate_batch(view[:end], pos)
                except CorruptRecordError:
                    break
                if header.base_offset != segment.next_offset:
                    break
                segment._account(pos, header)
                pos += header.size
        finally:
            view.release()
        file_size = os.fstat(segment._fd).st_size
        zero_range(segment._fd, segment.size, file_size - segment.size)
        os.fdatasync(segment._fd)
        return segment

    @classmethod
    def reopen_active(cls, directory: Path, base_offset: int, segment_bytes: int,
                      index_interval_bytes: int) -> Segment:
        """The last segment after a clean stop: trimmed files, grown back.

        Trusted only if its indexes pass their checks and the batches after
        the last index entry are intact and end exactly at the file's end;
        otherwise it is recovered like after a crash.
        """
        segment = cls(directory, base_offset, index_interval_bytes)
        segment._open_files(0, active=False)
        segment.closed = True
        segment.size = os.fstat(segment._fd).st_size
        if not (segment._indexes_look_right() and segment._tail_is_intact()):
            segment.close()
            return cls.recover_active(directory, base_offset, segment_bytes,
                                      index_interval_bytes)
        segment._load_tail_state()
        segment.activate(segment_bytes)
        return segment

    def _tail_is_intact(self) -> bool:
        """Fully validate the batches from the last index entry to the end."""
        last_entry = self.offset_index.last()
        pos = last_entry[1] if last_entry else 0
        expected = last_entry[0] + self.base_offset if last_entry else self.base_offset
        view = memoryview(self.buffer)[: self.size]
        try:
            while pos < self.size:
                try:
                    header = validate_batch(view, pos)
                except CorruptRecordError:
                    return False
                if header.base_offset != expected:
                    return False
                expected = header.next_offset
                pos += header.size
        finally:
            view.release()
        return pos == self.size

    def _open_files(self, segment_bytes: int, active: bool) -> None:
        flags = os.O_RDWR | os.O_CREAT
        self._open_fd = os.open(self.log_path, flags, 0o644)
        if active and os.fstat(self._fd).st_size < segment_bytes:
            os.ftruncate(self._fd, segment_bytes)
        self._remap()
        capacity = self._index_capacity(segment_bytes) if active else 0
        self.offset_index = OffsetIndex(self.index_path, capacity)
        self.time_index = TimeIndex(self.time_index_path, capacity)

    def _index_capacity(self, segment_bytes: int) -> int:
        return segment_bytes // self.index_interval_bytes + 2

    def _remap(self) -> None:
        """Drop the map; `buffer` maps the file again, at its size then, when read."""
        if self._map is not None:
            self._map.close()
            self._map = None

    @property
    def _fd(self) -> int:
        """The .log's descriptor, reopened on demand after release_fds()."""
        if self._open_fd < 0:
            self._open_fd = os.open(self.log_path, os.O_RDWR)
        return self._open_fd

    def release_fds(self) -> None:
        """A closed segment is read through its maps, which hold their own
        descriptors: close the three raw ones until a change needs them."""
        if self._open_fd >= 0:
            os.close(self._open_fd)
            self._open_fd = -1
        self.offset_index.release_fd()
        self.time_index.release_fd()

    def release_handles(self) -> None:
        """Give back every map and descriptor appends do not need (reads map
        again on demand): at 10,000 partitions a worker holds two descriptors
        per partition, its lock and its active .log, and no map of its own."""
        self._remap()
        for index in (self.offset_index, self.time_index):
            index.release_fd()
            index.release_map()

    @property
    def buffer(self) -> memoryview | bytes:
        """The .log, mapped read-only on first use (appends never need it).

        A SharedMap rather than mmap.mmap, whose duplicate descriptor would
        add one per partition to a worker that serves fetches at its door.
        Slices of it must be copied before the segment is remapped or closed.
        """
        if self._map is None:
            fd = self._open_fd if self._open_fd >= 0 else os.open(self.log_path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                if size:
                    self._map = SharedMap(fd, size)
            finally:
                if fd != self._open_fd:
                    os.close(fd)
        return self._map.view if self._map is not None else b""

    # indexes ---------------------------------------------------------------------------

    def _account(self, pos: int, header: BatchHeader, base_offset: int | None = None) -> None:
        """Book one appended batch: offsets, timestamps and maybe an index entry.

        Per batch, never per record: this is the whole of the append's Python
        work. `base_offset` is the stamped one when `header` is the producer's.
        """
        base = header.base_offset if base_offset is None else base_offset
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = header.max_timestamp
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.offset_of_max_timestamp = base
        if self._bytes_since_index > self.index_interval_bytes:
            self.offset_index.append(base - self.base_offset, pos)
            self._maybe_append_time_entry()
            self._bytes_since_index = 0
        self._bytes_since_index += header.size
        self.size = pos + header.size
        self.next_offset = base + header.last_offset_delta + 1

    def _append_closing_time_entry(self) -> None:
        """A closed segment's time index ends with (largest timestamp, last
        offset): it gives the segment's largest timestamp without a scan, and
        since the last offset is cheap to find, a cut-short file shows."""
        if self.max_timestamp < 0 or self.size == 0:
            return
        closing = (self.max_timestamp, self.next_offset - 1 - self.base_offset)
        if self.time_index.last() != closing:
            self.time_index.append(*closing)

    def _maybe_append_time_entry(self) -> None:
        last = self.time_index.last()
        if self.max_timestamp >= 0 and (last is None or self.max_timestamp > last[0]):
            relative = self.offset_of_max_timestamp - self.base_offset
            self.time_index.append(self.max_timestamp, relative)

    def index_full(self) -> bool:
        return (self.offset_index.count >= self.offset_index.capacity - 1
                or self.time_index.count >= self.time_index.capacity - 1)

    def _indexes_look_right(self) -> bool:
        if self.offset_index.path.stat().st_size % self.offset_index.entry.size:
            return False
        if self.time_index.path.stat().st_size % self.time_index.entry.size:
            return False
        if not self.offset_index.is_well_formed(self.size):
            return False
        if not self.time_index.is_well_formed(2**31 - 1):
            return False
        last_offset = self._last_offset_via_index()
        if last_offset is None:
            return False
        closing = self.time_index.last()
        if closing is not None and self.base_offset + closing[1] != last_offset:
            return False  # the closing entry is gone: the file was cut short
        return not self._indexes_missing_entries()

    def _last_offset_via_index(self) -> int | None:
        """The segment's last offset, walking headers from the last offset-index
        entry; None when that entry disagrees with the batch it points at."""
        last_entry = self.offset_index.last()
        start = 0
        if last_entry is not None:
            rel, start = last_entry
            if start + HEADER_SIZE > self.size:
                return None
            if batch_bounds(self.buffer, start)[0] != self.base_offset + rel:
                return None
        last_offset = self.base_offset - 1
        for _, header in iter_headers(self.buffer, start, self.size):
            last_offset = header.last_offset
        return last_offset

    def _indexes_missing_entries(self) -> bool:
        """An empty index is only right for a segment too small to have needed an
        entry; a deleted index file comes back empty, so catch it here."""
        if self.size == 0:
            return False
        if self.time_index.count == 0 and parse_header(self.buffer, 0).max_timestamp >= 0:
            return True  # every closed segment with timestamps ends with a time entry
        if self.offset_index.count == 0:
            for pos, _ in iter_headers(self.buffer, 0, self.size):
                if pos > self.index_interval_bytes:
                    return True  # this batch would have been indexed
        return False

    def rebuild_indexes(self) -> None:
        """Recreate both indexes from the batch headers, as they would have been written."""
        capacity = self._index_capacity(max(self.size, 1))
        self.offset_index.clear()
        self.time_index.clear()
        self.offset_index.extend(capacity)
        self.time_index.extend(capacity)
        self._reset_tail_state()
        for pos, header in iter_headers(self.buffer, 0, self.size):
            self._account(pos, header)
        if self.closed:  # keep a closed segment's indexes trimmed
            self._append_closing_time_entry()
            self.offset_index.trim()
            self.time_index.trim()

    def _reset_tail_state(self) -> None:
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = self.base_offset
        self.first_batch_timestamp = None
        self._bytes_since_index = 0

    def _load_tail_state(self) -> None:
        """Recompute next offset and timestamps of a trimmed segment from its last entries.

        Scans only from the last index entry to the end: a few KiB of headers.
        """
        self._reset_tail_state()
        if self.size == 0:
            return
        last_entry = self.offset_index.last()
        start = last_entry[1] if last_entry else 0
        last_time = self.time_index.last()
        if last_time is not None:
            self.max_timestamp = last_time[0]
            self.offset_of_max_timestamp = self.base_offset + last_time[1]
        first = parse_header(self.buffer, 0)
        self.first_batch_timestamp = first.max_timestamp
        self._bytes_since_index = 0
        for pos, header in iter_headers(self.buffer, start, self.size):
            if header.max_timestamp > self.max_timestamp:
                self.max_timestamp = header.max_timestamp
                self.offset_of_max_timestamp = header.base_offset
            self._bytes_since_index = pos + header.size - start
            self.next_offset = header.next_offset

    # writing ---------------------------------------------------------------------------

    def append(self, iov: list, headers: list[BatchHeader], bases: list[int], total: int) -> None:
        """Write stamped batches at the end; on any failure the segment is unchanged."""
        written = 0
        try:
            for i in range(0, len(iov), IOV_MAX):
                written += os.pwritev(self._fd, iov[i : i + IOV_MAX], self.size + written)
        except OSError as exc:
            raise KafkaStorageError.from_os_error(f"cannot write to {self.log_path}", exc) from exc
        if written != total:  # the kernel stops short only when the disk fills
            raise KafkaStorageError.from_os_error(
                f"short write to {self.log_path} ({written} of {total} bytes)",
                OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
            )
        pos = self.size
        for header, base in zip(headers, bases, strict=True):
            self._account(pos, header, base)
            pos += header.size

    def flush(self) -> None:
        """fdatasync: the file is preallocated, so no size metadata rides along.

        Waiting index entries go to their files too (unsynced: recovery
        rebuilds the active segment's indexes), so readers see them.
        """
        os.fdatasync(self._fd)
        self.offset_index.release_fd()  # writes the waiting entries, then closes
        self.time_index.release_fd()

    def close_for_roll(self) -> None:
        """Trim the files to their data and make them durable: the segment is closed."""
        self._append_closing_time_entry()
        os.fdatasync(self._fd)
        os.ftruncate(self._fd, self.size)
        os.fsync(self._fd)
        self.offset_index.trim()
        self.time_index.trim()
        self.closed = True
        self.release_fds()
        # Keep the full-size map: a trimmed file's pages below `size` stay valid
        # and nobody reads past `size`.

    def activate(self, segment_bytes: int) -> None:
        """Grow a trimmed segment back to full size so it can take appends again."""
        if os.fstat(self._fd).st_size < segment_bytes:
            os.ftruncate(self._fd, segment_bytes)
            self._remap()
        capacity = self._index_capacity(segment_bytes)
        self.offset_index.extend(capacity)
        self.time_index.extend(capacity)
        closing = (self.max_timestamp, self.next_offset - 1 - self.base_offset)
        if self.time_index.count and self.time_index.last() == closing:
            # The closing entry points inside a batch; an open segment's entries
            # all point at batch starts, so it goes until the segment closes again.
            self.time_index.truncate_entries(self.time_index.count - 1)
        self.closed = False

    def truncate_to(self, offset: int) -> None:
        """Drop the batch holding `offset` and every later one; zero them on disk.

        The cut is durable before this returns: replication relies on a cut
        batch never coming back after a crash.
        """
        pos = self.position_of(offset)
        if pos is None:
            return
        old_size = self.size
        self.size = pos
        # The new end is the base of the batch holding `offset`, not `offset`:
        # an entry for that batch (a time entry names it by its base) goes with it.
        end = batch_bounds(self.buffer, pos)[0]
        keep = sum(1 for r, p in self.offset_index.entries() if p < pos)
        self.offset_index.truncate_entries(keep)
        keep_time = sum(1 for _, r in self.time_index.entries() if self.base_offset + r < end)
        self.time_index.truncate_entries(keep_time)
        zero_range(self._fd, pos, old_size - pos)
        os.fdatasync(self._fd)
        self._load_tail_state()

    # reading ----------------------------------------------------------------------------

    def position_of(self, offset: int) -> int | None:
        """Position of the batch holding `offset`, through a verified index entry."""
        if offset >= self.next_offset or offset < self.base_offset or self.size == 0:
            return None
        start = self._verified_floor(offset)
        if start is None:
            self.rebuild_indexes()
            start = self._verified_floor(offset) or 0
        return find_batch(self.buffer, start, self.size, offset)

    def _verified_floor(self, offset: int) -> int | None:
        """The nearest index entry at or below `offset` whose header agrees with it;
        0 when there is none, None when the nearest one is wrong (index corrupt)."""
        candidates = self.offset_index.floor_entries(offset - self.base_offset)
        if not candidates:
            return 0
        rel, pos = candidates[0]
        if pos >= 0 and pos + HEADER_SIZE <= self.size:
            base, _, _ = batch_bounds(self.buffer, pos)
            if base == self.base_offset + rel:
                return pos
        return None

    def read(self, offset: int, max_bytes: int, limit_offset: int) -> bytes:
        """Whole batches from the one holding `offset`, below `limit_offset`."""
        pos = self.position_of(offset)
        if pos is None:
            return b""
        end, _ = collect_batches(self.buffer, pos, self.size, max_bytes, limit_offset)
        return bytes(self.buffer[pos:end])  # a copy: the map may go before the caller is done

    def headers_from(self, offset: int) -> Iterator[tuple[int, BatchHeader]]:
        pos = self.position_of(offset)
        if pos is None:
            return iter(())
        return iter_headers(self.buffer, pos, self.size)

    # lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        self.release_fds()
        self.offset_index.close()
        self.time_index.close()

    def delete(self) -> None:
        self.close()
        for path in (self.log_path, self.index_path, self.time_index_path):
            path.unlink(missing_ok=True)

