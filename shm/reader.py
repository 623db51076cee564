"""Following a partition log from any process on the host, through shared maps.

A PartitionReader maps the control block and the segment files read-only and
serves reads up to the published high watermark without a word from the
writer. It never reads past the published size of the active segment, nor past
the file size of a closed one: a read beyond a file's end would fault.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

from shm.control_block import ControlBlockReader, LogPosition, control_block_path
from shm.errors import OffsetOutOfRangeError
from shm.index import OFFSET_ENTRY, OffsetIndex
from shm.record_batch import HEADER_SIZE
from shm.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    batch_bounds,
    collect_batches,
    find_batch,
    parse_segment_name,
    segment_name,
)
from shm.shared_map import SharedMap


class _MappedSegment:
    """A reader's read-only maps of one segment and where it last stopped reading.

    The maps hold no descriptor (shm.shared_map) and the index is mapped only
    when a read first needs it: a reader of 10,000 partitions stays far below
    the open-file limit and maps only what it reads.
    """

    def __init__(self, directory: Path, base_offset: int):
        self.base_offset = base_offset
        stem = directory / segment_name(base_offset)
        self._log_path = stem.with_suffix(LOG_SUFFIX)
        self._index_path = stem.with_suffix(INDEX_SUFFIX)
        self._log_map = _map_readonly(self._log_path)  # FileNotFoundError once deleted
        self._index_map: SharedMap | None = None
        self._index_mapped = False
        self.closed_size: int | None = None
        self.hint: tuple[int, int] = (base_offset, 0)  # (offset, position) of a batch start

    @property
    def log(self) -> memoryview | None:
        return self._log_map.view if self._log_map is not None else None

    @property
    def index(self) -> memoryview | None:
        if not self._index_mapped:
            self._index_mapped = True
            try:
                self._index_map = _map_readonly(self._index_path)
            except FileNotFoundError:
                self._index_map = None
        return self._index_map.view if self._index_map is not None else None

    def valid_end(self, position: LogPosition) -> int:
        if position.active_segment_base == self.base_offset:
            end = position.active_segment_size
        else:
            if self.closed_size is None:
                self.closed_size = os.stat(self._log_path).st_size
            end = self.closed_size
        if self._log_map is None or len(self._log_map) < end:
            old, self._log_map = self._log_map, _map_readonly(self._log_path)  # it grew
            if old is not None:
                old.close()
        return min(end, len(self._log_map) if self._log_map is not None else 0)

    def locate(self, offset: int, end: int) -> int | None:
        """Position of the batch holding `offset`: from the last read's end if
        it continues there, else from a verified index entry, else from 0."""
        hint_offset, hint_pos = self.hint
        if hint_offset == offset and hint_pos + HEADER_SIZE <= end:
            start = hint_pos
        else:
            start = self._index_floor(offset, end)
        return find_batch(self.log, start, end, offset)

    def _index_floor(self, offset: int, end: int) -> int:
        if offset == self.base_offset or self.index is None:
            return 0
        rel = offset - self.base_offset
        # Each entry points at a different batch below `end`: no more than
        # end // HEADER_SIZE + 1 of them, so the unused pages stay untouched.
        most = (end // HEADER_SIZE + 1) * OFFSET_ENTRY.size
        lo, hi = 0, OffsetIndex.published_count(self.index, most)
        while lo < hi:
            mid = (lo + hi) // 2
            if OFFSET_ENTRY.unpack_from(self.index, mid * OFFSET_ENTRY.size)[0] <= rel:
                lo = mid + 1
            else:
                hi = mid
        for i in range(lo - 1, max(lo - 4, -1), -1):  # an entry may be mid-write: verify
            entry_rel, pos = OFFSET_ENTRY.unpack_from(self.index, i * OFFSET_ENTRY.size)
            in_range = pos >= 0 and pos + HEADER_SIZE <= end
            if in_range and batch_bounds(self.log, pos)[0] == self.base_offset + entry_rel:
                return pos
        return 0

    def close(self) -> None:
        for m in (self._log_map, self._index_map):
            if m is not None:
                m.close()


class PartitionReader:
    """Reads one partition's log in any process, following its writer."""

    def __init__(self, directory: Path, control: ControlBlockReader, control_path: Path):
        self.directory = directory
        self._control: ControlBlockReader | None = control
        self._control_path = control_path
        self._segments: dict[int, _MappedSegment] = {}
        self._bases: list[int] = []
        self._layout: int | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *,
             control_path: str | os.PathLike[str] | None = None) -> PartitionReader:
        """Attach to a log whose writer is running (its control block must exist)."""
        directory = Path(directory)
        path = Path(control_path) if control_path else control_block_path(directory)
        try:
            control = ControlBlockReader(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no control block for {directory} at {path}: is its writer running?"
            ) from None
        return cls(directory, control, path)

    def position(self) -> LogPosition:
        """A consistent snapshot of where the log stands.

        When the writer closed the log and a new writer reopened it, the new
        control block is found here; FileNotFoundError while none is open.
        """
        if self._control is not None and not self._control.live:
            self._control.close()
            self._control = None
        if self._control is None:
            self._control = ControlBlockReader(self._control_path)
        return self._control.snapshot()

    @property
    def log_start_offset(self) -> int:
        return self.position().log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.position().log_end_offset

    @property
    def high_watermark(self) -> int:
        return self.position().high_watermark

    @property
    def leader_epoch(self) -> int:
        return self.position().leader_epoch

    def read(self, offset: int, max_bytes: int = 1 << 20) -> bytes:
        """Whole batches from the one holding `offset`, below the high watermark."""
        position = self.position()
        if offset < position.log_start_offset or offset > position.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range: the log holds "
                f"[{position.log_start_offset}, {position.log_end_offset})"
            )
        if offset >= position.high_watermark:
            return b""
        self._refresh(position)
        i = bisect.bisect_right(self._bases, offset) - 1
        while 0 <= i < len(self._bases):
            segment = self._segments[self._bases[i]]
            end = segment.valid_end(position)
            pos = segment.locate(offset, end) if end else None
            if pos is not None:
                stop, next_offset = collect_batches(
                    segment.log, pos, end, max_bytes, position.high_watermark
                )
                if stop > pos:
                    segment.hint = (next_offset, stop)
                    return bytes(segment.log[pos:stop])  # a copy: the map may go
            i += 1
        return b""

    def _refresh(self, position: LogPosition) -> None:
        """Re-list the segments when the writer rolled, cut or deleted some."""
        if position.layout == self._layout and position.active_segment_base in self._segments:
            return
        if position.layout != self._layout:
            for segment in self._segments.values():
                segment.close()
            self._segments.clear()
        listed = sorted(
            base for base in (parse_segment_name(n) for n in os.listdir(self.directory))
            if base is not None and base <= position.active_segment_base
        )
        # The log start may lie inside a segment (DeleteRecords): keep the one holding it.
        first = bisect.bisect_right(listed, position.log_start_offset) - 1
        on_disk = listed[max(first, 0):]
        for base in list(self._segments):
            if base not in on_disk:
                self._segments.pop(base).close()
        for base in on_disk:
            if base not in self._segments:
                try:
                    self._segments[base] = _MappedSegment(self.directory, base)
                except FileNotFoundError:
                    continue  # deleted by retention since the listing
        self._bases = sorted(self._segments)
        self._layout = position.layout

    def close(self) -> None:
        for segment in self._segments.values():
            segment.close()
        self._segments.clear()
        if self._control is not None:
            self._control.close()
            self._control = None


def _map_readonly(path: Path) -> SharedMap | None:
    """The whole file, mapped read-only; None while it is empty."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return SharedMap(fd, size) if size else None
    finally:
        os.close(fd)
