"""The per-partition control block: a seqlock-protected record in /dev/shm.

The one writer of a partition publishes where its log stands; any process on
the host maps the block read-only and follows the log without a message.

Layout, 128 bytes, native byte order, every field 8-byte aligned::

    offset  field                 meaning
     0      seq          uint64   seqlock counter: odd while the writer updates
     8      magic        uint32   b"RLCB"
    12      version      uint32   1
    16      log_start    int64    first offset still in the log
    24      log_end      int64    offset the next batch will get
    32      high_wm      int64    readers may read below this offset
    40      active_base  int64    base offset of the active segment
    48      active_size  int64    valid bytes in the active segment
    56      leader_epoch int64    epoch stamped on new batches
    64      layout       int64    bumped when segments are deleted or cut back
    72      writer_pid   int64    pid of the owner, for diagnostics
    80..127 reserved, zero

Memory ordering. The writer appends a batch with pwrite (a system call: its
copy into the page cache is complete when it returns), then publishes:
seq += 1 (odd), store the fields, seq += 1 (even). A reader loads seq, the
fields, then seq again, and retries while seq is odd or has changed; only
then does it read the segment map up to the published size. Each field is
read and written as one aligned 8-byte access (memoryview cast to 'q'), so
no field tears. On x86-64 (TSO) stores become visible in program order and
loads are not reordered with other loads, so a reader that sees the new
`seq` also sees the fields and the segment bytes written before it. Where
that cannot be assumed, the owner also announces new positions over ZeroMQ,
which is the wake-up for long-poll fetches in any case.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from shm.shared_map import SharedMap

MAGIC = int.from_bytes(b"RLCB", "little")
VERSION = 1
SIZE = 128

# Index of each field in the block viewed as int64 words.
SEQ, MAGIC_VERSION, LOG_START, LOG_END, HIGH_WM = 0, 1, 2, 3, 4
ACTIVE_BASE, ACTIVE_SIZE, LEADER_EPOCH, LAYOUT, WRITER_PID = 5, 6, 7, 8, 9
_FIELDS = (LOG_START, LOG_END, HIGH_WM, ACTIVE_BASE, ACTIVE_SIZE, LEADER_EPOCH, LAYOUT, WRITER_PID)

SHM_ROOT = Path(os.environ.get("RINGLOG_SHM_DIR", "/dev/shm"))


def control_block_path(log_directory: str | os.PathLike[str]) -> Path:
    """Where the control block of the log in `log_directory` lives.

    Derived from the directory's real path, so a reader needs only the log
    directory to find it; one folder per user keeps hosts with several users apart.
    """
    digest = hashlib.sha1(os.path.realpath(log_directory).encode()).hexdigest()[:24]
    return SHM_ROOT / f"ringlog-{os.getuid()}" / f"{digest}.ctl"


@dataclass(frozen=True, slots=True)
class LogPosition:
    """One consistent snapshot of a control block."""

    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    active_segment_base: int
    active_segment_size: int
    leader_epoch: int
    layout: int
    writer_pid: int


class ControlBlockWriter:
    """The owner's side: creates the block and publishes under the seqlock."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.path = path
        if not path.exists():
            _create_complete(path)
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = SharedMap(fd, SIZE, writable=True)  # holds no descriptor
        finally:
            os.close(fd)
        self._words = self._map.view.cast("q")
        seq = self._words[SEQ]
        if seq & 1:  # a writer died mid-update: make the block consistent again
            self._words[SEQ] = seq + 1
        self._words[MAGIC_VERSION] = MAGIC | (VERSION << 32)

    def publish(self, position: LogPosition) -> None:
        words = self._words
        words[SEQ] += 1
        for index, value in zip(_FIELDS, _values(position), strict=True):
            words[index] = value
        words[SEQ] += 1

    def publish_end(self, log_end: int, active_size: int, high_watermark: int) -> None:
        """The append path's update: only the three words an append changes."""
        words = self._words
        seq = words[SEQ]
        words[SEQ] = seq + 1
        words[LOG_END] = log_end
        words[ACTIVE_SIZE] = active_size
        words[HIGH_WM] = high_watermark
        words[SEQ] = seq + 2

    def close(self, unlink: bool = True) -> None:
        """Mark the block closed (readers holding the map see it and let go)
        and, by default, remove it."""
        if unlink:
            self._words[MAGIC_VERSION] = 0
        self._words.release()
        self._map.close()
        if unlink:
            self.path.unlink(missing_ok=True)


class ControlBlockReader:
    """A reader's side: a read-only map and snapshots taken under the seqlock."""

    def __init__(self, path: Path):
        fd = os.open(path, os.O_RDONLY)
        try:
            self._map = SharedMap(fd, SIZE)  # holds no descriptor
        finally:
            os.close(fd)
        self._words = self._map.view.cast("q")
        if self._words[MAGIC_VERSION] != MAGIC | (VERSION << 32):
            self.close()
            raise ValueError(f"{path} is not a Ringlog control block of version {VERSION}")

    @property
    def live(self) -> bool:
        """False once the writer closed the log: a reopened log has a new block."""
        return self._words[MAGIC_VERSION] == MAGIC | (VERSION << 32)

    def snapshot(self, timeout_s: float = 1.0) -> LogPosition:
        """Retry until a consistent copy is read; a writer that died mid-update
        leaves the counter odd, so give up after `timeout_s` instead of spinning."""
        words = self._words
        deadline = None
        while True:
            before = words[SEQ]
            if not before & 1:
                values = [words[index] for index in _FIELDS]
                if words[SEQ] == before:
                    return LogPosition(*values)
            if deadline is None:
                deadline = time.monotonic() + timeout_s
            elif time.monotonic() > deadline:
                raise TimeoutError("control block stayed mid-update: its writer has died")
            os.sched_yield()

    def close(self) -> None:
        self._words.release()
        self._map.close()


def _create_complete(path: Path) -> None:
    """Make a new block appear whole: written (magic included) under a
    temporary name, then renamed, so no reader ever maps a half-made one.
    The write allocates the page and can fail with ENOSPC, where a store
    through a map would raise SIGBUS."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    block = bytearray(SIZE)
    memoryview(block).cast("q")[MAGIC_VERSION] = MAGIC | (VERSION << 32)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, bytes(block), 0)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _values(position: LogPosition) -> tuple[int, ...]:
    return (
        position.log_start_offset,
        position.log_end_offset,
        position.high_watermark,
        position.active_segment_base,
        position.active_segment_size,
        position.leader_epoch,
        position.layout,
        position.writer_pid,
    )
