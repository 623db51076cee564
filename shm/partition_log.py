"""A partition's log: an ordered run of segments with one writer.

The writer validates each record set header by header (never record by
record), stamps base offsets and its leader epoch, appends with pwritev and
makes the data durable with fdatasync when the flush policy says so. After
every change it publishes the log's position in the control block, so that
readers in other processes (shm.reader) follow without a message.

Directory of one partition::

    00000000000000000000.log/.index/.timeindex   closed segments, trimmed
    00000000000000005120.log/.index/.timeindex   the active segment, preallocated
    leader-epoch-checkpoint                      where each leader epoch began
    log-start-offset-checkpoint                  the log start offset DeleteRecords set
    .lock                                        flock held by the one writer
    .clean-shutdown                              present only between a clean
                                                 close and the next open
"""

from __future__ import annotations

import bisect
import fcntl
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from shm.control_block import ControlBlockWriter, LogPosition, control_block_path
from shm.errors import (
    InvalidRecordError,
    KafkaStorageError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from shm.files import fsync_directory, write_atomically
from shm.leader_epoch import LeaderEpochCache
from shm.record_batch import (
    STAMP_SIZE,
    TIMESTAMP_LOG_APPEND_TIME,
    BatchHeader,
    parse_header,
    stamp,
    validate_record_set,
)
from shm.segment import (
    INDEX_SUFFIX,
    TIME_INDEX_SUFFIX,
    Segment,
    parse_segment_name,
)

CLEAN_SHUTDOWN = ".clean-shutdown"
LOCK_FILE = ".lock"
# A replicated log's high watermark, for its next start (format: version, then
# the offset, one per line: "0\n1234\n"). A single node's is its log end.
HIGH_WATERMARK_CHECKPOINT = "high-watermark-checkpoint"
# The log start offset DeleteRecords (or a follower's leader) moved past the
# first segment's base offset, for the next start; the same format:
# "0\n1234\n". Kafka keeps one such checkpoint per log directory; one per
# partition here, written (fsync, rename, fsync) before DeleteRecords is answered.
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
FLUSH_POLICIES = ("batch", "interval", "os")
WEEK_MS = 7 * 24 * 3600 * 1000
MAX_RELATIVE_OFFSET = 2**31 - 1


@dataclass(frozen=True)
class StorageBounds:
    """What the engine accepts for one LogConfig field."""

    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None

    def reason(self, name: str, value: int | str) -> str | None:
        """Why `value` is refused for `name`, or None."""
        if self.choices is not None:
            if value not in self.choices:
                return f"{name} {value!r} is unknown; use one of {', '.join(self.choices)}"
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name} {value!r} must be an integer"
        if self.minimum is not None and value < self.minimum:
            return f"{name} {value} must be at least {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"{name} {value} must be at most {self.maximum}"
        return None


def _storage_setting(default: int | str, **bounds) -> Any:
    """A LogConfig field: its default and bounds, declared only here.

    The appliance's settings table (appliance.config) takes both from these
    fields for the broker key and the topic config of the same setting, so
    the engine and the configuration never disagree; shm never imports appliance.
    """
    return field(default=default, metadata={"bounds": StorageBounds(**bounds)})


@dataclass(frozen=True)
class LogConfig:
    """Per-partition storage settings; names follow Kafka's topic configs.

    flush_policy: `batch` makes appends durable at every flush() the owner
    calls once per tick (group commit) and publishes the high watermark only
    then; `interval` flushes every flush_interval_ms; `os` leaves it to the
    page cache. Under the last two, readers see data as soon as it is appended.
    """

    segment_bytes: int = _storage_setting(1 << 30, minimum=1024, maximum=2**31 - 1)
    segment_ms: int = _storage_setting(WEEK_MS, minimum=1)
    retention_ms: int = _storage_setting(WEEK_MS, minimum=-1)  # -1: no time limit
    retention_bytes: int = _storage_setting(-1, minimum=-1)  # -1: no size limit
    flush_policy: str = _storage_setting("batch", choices=FLUSH_POLICIES)
    flush_interval_ms: int = _storage_setting(1000, minimum=1)
    # Kafka's message.max.bytes: 1 MiB + 12
    max_batch_bytes: int = _storage_setting(1_048_588, minimum=0)
    index_interval_bytes: int = _storage_setting(4096, minimum=1)

    def __post_init__(self) -> None:
        for f in fields(self):
            reason = f.metadata["bounds"].reason(f.name, getattr(self, f.name))
            if reason:
                raise ValueError(reason)

    @staticmethod
    def default_of(name: str) -> int | str:
        """The default of the field `name`."""
        return LogConfig.__dataclass_fields__[name].default

    @staticmethod
    def bounds_of(name: str) -> StorageBounds:
        """What the field `name` accepts."""
        return LogConfig.__dataclass_fields__[name].metadata["bounds"]


class PartitionLog:
    """The writer's handle on one partition's log. Not thread-safe: one owner."""

    def __init__(self, directory: Path, config: LogConfig, control_path: Path, lock_fd: int):
        self.directory = directory
        self.config = config
        self.segments: list[Segment] = []
        self._bases: list[int] = []
        self._lock_fd = lock_fd
        self._control = ControlBlockWriter(control_path)
        self.epochs = LeaderEpochCache(directory)
        self.leader_epoch = max(self.epochs.latest_epoch, 0)
        self.high_watermark = 0
        # The log start offset DeleteRecords set, which may lie inside the first
        # segment (Kafka's logical logStartOffset); log_start_offset is the
        # larger of it and the first segment's base offset (retention moves that).
        self._log_start_floor = 0
        # True on a single node: the high watermark is the durable log end. A
        # replicated partition's owner sets it instead (set_high_watermark):
        # the leader to what the in-sync replicas hold, a follower to the leader's.
        self.hw_at_flush = True
        self.durable_end_offset = 0  # the log end as of the last flush
        self._layout = time.time_ns()  # differs per open, so readers re-map after a restart
        self._dirty = False
        self._last_flush_ms = _now_ms()

    # --- opening and closing ----------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike[str], config: LogConfig | None = None, *,
             control_path: str | os.PathLike[str] | None = None) -> PartitionLog:
        """Create the log or recover it after a clean or unclean stop."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = config or LogConfig()
        lock_fd = _lock(directory)
        log = None
        try:
            path = Path(control_path) if control_path else control_block_path(directory)
            log = cls(directory, config, path, lock_fd)
            log._load_segments()
        except BaseException:
            if log is not None:  # give back every descriptor and map taken so far
                for segment in log.segments:
                    segment.close()
                log._control.close(unlink=True)  # readers must not take it for open
            os.close(lock_fd)
            raise
        return log

    def _load_segments(self) -> None:
        directory, config = self.directory, self.config
        clean = (directory / CLEAN_SHUTDOWN).exists()
        bases = _segment_bases(directory)
        for base in bases[:-1]:
            self.segments.append(Segment.open_closed(directory, base, config.index_interval_bytes))
        if not bases:
            last = Segment.create(directory, 0, config.segment_bytes, config.index_interval_bytes)
        elif clean:
            last = Segment.reopen_active(directory, bases[-1], config.segment_bytes,
                                         config.index_interval_bytes)
        else:
            last = Segment.recover_active(directory, bases[-1], config.segment_bytes,
                                          config.index_interval_bytes)
            self._repair_epochs(last)
        self.segments.append(last)
        self._bases = [s.base_offset for s in self.segments]
        if clean:
            (directory / CLEAN_SHUTDOWN).unlink()
            fsync_directory(directory)
        self.epochs.truncate_from_end(self.log_end_offset)
        self.leader_epoch = max(self.epochs.latest_epoch, 0)
        self.high_watermark = self.log_end_offset  # all of it survived, so all is durable
        self.durable_end_offset = self.log_end_offset
        self._log_start_floor = min(self._checkpointed_log_start(), self.log_end_offset)
        self._publish()
        self._delete_segments_below_log_start()  # a crash may have come before they went

    def _checkpointed_log_start(self) -> int:
        """The checkpointed log start offset; 0 without (or with a damaged) checkpoint."""
        try:
            version, offset = (self.directory / LOG_START_OFFSET_CHECKPOINT).read_text().split()
            return int(offset) if version == "0" else 0
        except (OSError, ValueError):
            return 0

    def _repair_epochs(self, segment: Segment) -> None:
        """Epochs that began in the recovered tail may have missed the checkpoint."""
        self.epochs.truncate_from_end(segment.next_offset)
        for _, header in segment.headers_from(segment.base_offset):
            self.epochs.observe(header.partition_leader_epoch, header.base_offset)

    def close(self) -> None:
        """Flush, trim the active segment and leave a clean-shutdown marker."""
        active = self.active
        active.close_for_roll()
        if not self.hw_at_flush:
            self.checkpoint_high_watermark()
        self.epochs.save()  # a clean open does not rescan the active segment for epochs
        (self.directory / CLEAN_SHUTDOWN).touch()
        fsync_directory(self.directory)
        for segment in self.segments:
            segment.close()
        self.segments.clear()
        self._control.close(unlink=True)
        os.close(self._lock_fd)

    def release_handles(self) -> None:
        """Unmap and close what appends do not need; reads take it back on demand."""
        for segment in self.segments:
            segment.release_handles()

    # --- positions ------------------------------------------------------------

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    @property
    def log_start_offset(self) -> int:
        """The first offset readers may ask for (Kafka's log start offset, the
        low watermark of one replica): DeleteRecords' offset, or the first
        segment's base once retention deleted past it."""
        return max(self._log_start_floor, self.segments[0].base_offset)

    @property
    def log_end_offset(self) -> int:
        return self.active.next_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def _publish(self) -> None:
        self._control.publish(LogPosition(
            log_start_offset=self.log_start_offset,
            log_end_offset=self.log_end_offset,
            high_watermark=self.high_watermark,
            active_segment_base=self.active.base_offset,
            active_segment_size=self.active.size,
            leader_epoch=self.leader_epoch,
            layout=self._layout,
            writer_pid=os.getpid(),
        ))

    # --- writing --------------------------------------------------------------

    def append(self, batches: bytes | bytearray | memoryview) -> int:
        """Append one or more concatenated record batches; return the first base offset.

        Validation is all or nothing: a bad batch anywhere leaves the log as it
        was. The caller's buffer is not modified: each batch is written as a
        fresh 16-byte prefix (base offset, length, leader epoch) followed by
        the caller's bytes, gathered by pwritev.
        """
        headers = self._validated(batches)
        total = len(batches)
        if len(headers) == 1:
            records, newest = headers[0].record_count, headers[0].max_timestamp
        else:
            records = sum(h.record_count for h in headers)
            newest = max(h.max_timestamp for h in headers)
        self._maybe_roll(total, records, newest)
        view = memoryview(batches)
        base = offset = self.log_end_offset
        iov, bases, pos = [], [], 0
        epoch = self.leader_epoch
        for header in headers:
            iov.append(stamp(offset, header.batch_length, epoch))
            iov.append(view[pos + STAMP_SIZE : pos + header.size])
            bases.append(offset)
            offset += header.record_count
            pos += header.size
        self.active.append(iov, headers, bases, total)
        if epoch > self.epochs.latest_epoch:
            # Saved at the roll or close, not here: two fsyncs on the first append
            # of every partition made produce to 1,000 new partitions ~10x slower.
            self.epochs.observe(epoch, base, save=False)
        self._appended(offset)
        return base

    def _validated(self, batches: bytes | bytearray | memoryview) -> list[BatchHeader]:
        """Every batch's header, or the error that refuses the whole record set."""
        headers = validate_record_set(batches, self.config.max_batch_bytes)
        if len(batches) > self.config.segment_bytes:
            raise RecordTooLargeError(f"record set of {len(batches)} bytes exceeds "
                                      f"segment.bytes ({self.config.segment_bytes})")
        return headers

    def append_as_follower(self, batches: bytes | bytearray | memoryview) -> int:
        """Append batches read from the leader's log as they are, with the
        leader's base offsets and leader epochs (no restamping), as Kafka's
        followers do; the first base offset.

        They must continue this log exactly: a first batch not at the log
        end, or offsets that skip, raise OffsetOutOfRangeError (the follower
        fetches again from its log end); a batch of an older leader epoch
        than the log's newest raises InvalidRecordError (the follower must
        truncate first). Nothing is written unless every batch passes.
        """
        headers = self._validated(batches)
        total = len(batches)
        expected, epoch = self.log_end_offset, self.epochs.latest_epoch
        for header in headers:
            if header.base_offset != expected:
                raise OffsetOutOfRangeError(
                    f"a replicated batch at offset {header.base_offset} does not continue "
                    f"the log, whose end is {expected}")
            if header.partition_leader_epoch < epoch:
                raise InvalidRecordError(
                    f"a replicated batch of leader epoch {header.partition_leader_epoch} "
                    f"follows epoch {epoch}: truncate to the leader's epoch end first")
            expected, epoch = header.next_offset, header.partition_leader_epoch
        records = sum(h.record_count for h in headers)
        self._maybe_roll(total, records, max(h.max_timestamp for h in headers))
        base = self.log_end_offset
        self.active.append([memoryview(batches)], headers, [h.base_offset for h in headers],
                           total)
        for header in headers:  # saved at the roll or close, as append()'s are
            self.epochs.observe(header.partition_leader_epoch, header.base_offset, save=False)
        self.leader_epoch = max(self.leader_epoch, self.epochs.latest_epoch)
        self._appended(expected)
        return base

    def _appended(self, end: int) -> None:
        """The log now ends at `end`: tell readers, and move the high watermark
        where no flush will (policies other than `batch`)."""
        self._dirty = True
        if self.config.flush_policy != "batch":
            self.durable_end_offset = end
            if self.hw_at_flush:
                self.high_watermark = end
        self._control.publish_end(end, self.active.size, self.high_watermark)

    def set_high_watermark(self, offset: int) -> bool:
        """Raise the high watermark to `offset` (at most the durable log end);
        whether it moved. It never goes down here: only truncation lowers it."""
        offset = min(offset, self.durable_end_offset)
        if offset <= self.high_watermark:
            return False
        self.high_watermark = offset
        self._publish()
        return True

    def _maybe_roll(self, incoming_bytes: int, incoming_records: int, incoming_ts: int) -> None:
        """Roll on size, record count, a full index, or age as Kafka measures it:
        the incoming batch's timestamp minus the segment's first batch's."""
        active = self.active
        if active.size == 0:
            return
        config = self.config
        too_big = active.size + incoming_bytes > config.segment_bytes
        first_ts = active.first_batch_timestamp
        too_old = first_ts is not None and incoming_ts - first_ts > config.segment_ms
        too_many = self.log_end_offset + incoming_records - active.base_offset > MAX_RELATIVE_OFFSET
        if too_big or too_old or too_many or active.index_full():
            self.roll()

    def roll(self) -> None:
        """Close the active segment and start a new one at the log end offset.

        If the disk refuses the new segment, the old one takes appends again.
        """
        old = self.active
        try:
            old.close_for_roll()
            self.epochs.save()  # recovery rescans only the active segment for epoch starts
            segment = Segment.create(self.directory, self.log_end_offset,
                                     self.config.segment_bytes, self.config.index_interval_bytes)
        except OSError as exc:
            old.activate(self.config.segment_bytes)
            raise KafkaStorageError.from_os_error(
                f"cannot roll {self.directory} to a new segment", exc
            ) from exc
        self.segments.append(segment)
        self._bases.append(segment.base_offset)
        self._publish()

    def flush(self) -> None:
        """Make everything appended so far durable (fdatasync), then let readers see it."""
        if self._dirty:
            self.active.flush()
            self._dirty = False
        self._last_flush_ms = _now_ms()
        self.durable_end_offset = self.log_end_offset
        if self.hw_at_flush and self.high_watermark != self.log_end_offset:
            self.high_watermark = self.log_end_offset
            self._publish()

    def maybe_flush(self, now_ms: int | None = None) -> bool:
        """Flush if the policy says it is time; the owner calls this once per tick."""
        if not self.flush_due(now_ms):
            return False
        self.flush()
        return True

    def flush_due(self, now_ms: int | None = None) -> bool:
        """Whether maybe_flush() would flush now: an owner of many logs picks
        the due ones first, to flush them together."""
        policy = self.config.flush_policy
        if not self._dirty or policy == "os":
            return False
        if policy == "interval":
            now_ms = _now_ms() if now_ms is None else now_ms
            return now_ms - self._last_flush_ms >= self.config.flush_interval_ms
        return True

    def set_leader_epoch(self, epoch: int) -> None:
        """Batches appended from now on carry `epoch` (a new leader took over)."""
        if epoch < self.leader_epoch:
            raise ValueError(f"leader epoch {epoch} is older than the current {self.leader_epoch}")
        self.leader_epoch = epoch
        self._publish()

    def checkpoint_high_watermark(self) -> None:
        """Write the high watermark where the next start finds it (a replicated
        log); the owner calls it every few seconds, as Kafka does every
        replica.high.watermark.checkpoint.interval.ms, and close() once."""
        write_atomically(self.directory / HIGH_WATERMARK_CHECKPOINT,
                         b"0\n%d\n" % self.high_watermark)

    def restore_high_watermark(self) -> int:
        """Make the log replicated, its high watermark the checkpointed one (at
        most the log end) instead of the log end: records past it were maybe
        never committed. Nothing is truncated to it (KIP-101): only the
        leader's epochs decide a cut. No or a damaged checkpoint: the log start."""
        self.hw_at_flush = False
        try:
            version, offset = (self.directory / HIGH_WATERMARK_CHECKPOINT).read_text().split()
            restored = int(offset) if version == "0" else self.log_start_offset
        except (OSError, ValueError):
            restored = self.log_start_offset
        self.high_watermark = max(self.log_start_offset, min(restored, self.log_end_offset))
        self._publish()
        return self.high_watermark

    def become_leader(self, epoch: int) -> None:
        """Lead from `epoch` on: the epoch starts at the log end, written to
        the leader-epoch checkpoint (fsynced) before any follower is served,
        so that a follower asking where the previous epoch ended is answered
        by this log even before it appends anything (replication.md rule 10)."""
        self.set_leader_epoch(epoch)
        self.epochs.save()  # first what appends observed unsaved
        self.epochs.observe(epoch, self.log_end_offset, save=True)

    # --- reading --------------------------------------------------------------

    def _check_offset(self, offset: int) -> None:
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range: the log holds "
                f"[{self.log_start_offset}, {self.log_end_offset})"
            )

    def read(self, offset: int, max_bytes: int = 1 << 20, *, upto: int | None = None) -> bytes:
        """Whole batches from the one holding `offset`, below the high watermark
        (or `upto`, e.g. the log end for a follower), at most `max_bytes` unless
        the first batch alone is larger. Empty at the limit."""
        self._check_offset(offset)
        limit = self.high_watermark if upto is None else upto
        i = bisect.bisect_right(self._bases, offset) - 1
        while offset < limit and i < len(self.segments):
            data = self.segments[i].read(offset, max_bytes, limit)
            if data:
                return data
            i += 1
            if i < len(self.segments):
                offset = max(offset, self.segments[i].base_offset)
        return b""

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """The first offset whose record timestamp is >= `timestamp_ms`, below the
        high watermark, or None."""
        found = self.record_at_or_after(timestamp_ms)
        return None if found is None else found[0]

    def record_at_or_after(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or past the log start
        whose timestamp is >= `timestamp_ms`, below the high watermark, or
        None: what Kafka's ListOffsets answers for a time. Decodes at most
        the batch that holds it (and the one the log start cuts through)."""
        start_offset = self.log_start_offset
        for segment in self.segments:
            if segment.max_timestamp < timestamp_ms:
                continue
            start = max(self._time_index_start(segment, timestamp_ms), start_offset)
            for _, header in segment.headers_from(start):
                if header.base_offset >= self.high_watermark:
                    return None
                if header.max_timestamp >= timestamp_ms and header.next_offset > start_offset:
                    found = self._first_record_at(segment, header, timestamp_ms, start_offset)
                    if found is not None:
                        return found
        return None

    def _time_index_start(self, segment: Segment, timestamp_ms: int) -> int:
        entry = segment.time_index.floor_below(timestamp_ms)
        if entry is None:
            return segment.base_offset
        ts, rel = entry
        offset = segment.base_offset + rel
        pos = segment.position_of(offset)
        if pos is not None:
            header = parse_header(segment.buffer, pos)
            if header.base_offset == offset and header.max_timestamp == ts:
                return offset
        segment.rebuild_indexes()  # the entry disagrees with the log it indexes
        return segment.base_offset

    @staticmethod
    def _first_record_at(segment: Segment, header: BatchHeader, timestamp_ms: int,
                         min_offset: int) -> tuple[int, int] | None:
        """The batch's first record at or past `min_offset` (the log start)
        with a timestamp >= `timestamp_ms`; None when the log start cut off
        every such record of the batch."""
        if header.timestamp_type == TIMESTAMP_LOG_APPEND_TIME:  # every record's timestamp
            return max(header.base_offset, min_offset), header.max_timestamp
        if header.base_timestamp >= timestamp_ms and header.base_offset >= min_offset:
            return header.base_offset, header.base_timestamp
        from shm.records import decode_batch  # off the hot path: one batch, once

        pos = segment.position_of(header.base_offset)
        for record in decode_batch(segment.buffer, pos).records:
            if record.timestamp >= timestamp_ms and record.offset >= min_offset:
                return record.offset, record.timestamp
        return None if header.base_offset < min_offset else (header.base_offset,
                                                              header.base_timestamp)

    # --- cutting ----------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Cut the log back so that its end is at or below `offset`.

        The batch holding `offset` goes too (batches are never split), so the
        new log end is that batch's base offset. Below the log start the whole
        log is replaced by an empty one starting at `offset`.
        """
        if offset >= self.log_end_offset:
            return
        self._layout += 1
        if offset < self.log_start_offset:
            self._replace_with_empty(offset)
        else:
            i = bisect.bisect_right(self._bases, offset) - 1
            for segment in self.segments[i + 1 :]:
                segment.delete()
            del self.segments[i + 1 :]
            self.active.activate(self.config.segment_bytes)
            self.active.truncate_to(offset)
        fsync_directory(self.directory)
        self._bases = [s.base_offset for s in self.segments]
        self.epochs.truncate_from_end(self.log_end_offset)
        self.high_watermark = min(self.high_watermark, self.log_end_offset)
        self.durable_end_offset = min(self.durable_end_offset, self.log_end_offset)
        if self._log_start_floor > self.log_end_offset:  # cut below it, as Kafka's truncateTo
            self._set_log_start_floor(self.log_end_offset)
        self._publish()

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Drop the whole log and go on from `offset`, empty: a follower whose
        log shares nothing with its leader's starts over at the leader's log
        start (Kafka's truncateFullyAndStartAt)."""
        self._layout += 1
        self._replace_with_empty(offset)
        fsync_directory(self.directory)
        self._bases = [s.base_offset for s in self.segments]
        self.epochs.truncate_from_end(-1)
        self.high_watermark = self.durable_end_offset = offset
        self._set_log_start_floor(offset)
        self._publish()

    def _replace_with_empty(self, offset: int) -> None:
        for segment in self.segments:
            segment.delete()
        self.segments = [Segment.create(self.directory, offset, self.config.segment_bytes,
                                        self.config.index_interval_bytes)]

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete closed segments past retention.ms or retention.bytes, oldest first.

        The active segment is never deleted. Returns how many segments went.
        """
        now_ms = _now_ms() if now_ms is None else now_ms
        config = self.config
        expired = 0
        closed = self.segments[:-1]
        if config.retention_ms >= 0:
            horizon = now_ms - config.retention_ms
            while expired < len(closed) and closed[expired].max_timestamp < horizon:
                expired += 1
        if config.retention_bytes >= 0:
            excess = self.size_bytes - config.retention_bytes
            for segment in closed[expired:]:
                if excess - segment.size < 0:
                    break
                excess -= segment.size
                expired += 1
        return self._delete_first_segments(max(expired, self._segments_below_log_start()))

    # --- deleting records (Kafka's DeleteRecords) ------------------------------------

    def advance_log_start_offset(self, offset: int) -> int:
        """Move the log start offset up to `offset` (Kafka's
        maybeIncrementLogStartOffset): records below it can no longer be
        read, whole segments below it are deleted now; the new log start.

        `offset` past the high watermark raises OffsetOutOfRangeError (only
        committed records may be deleted); at or below the log start it
        changes nothing. The offset is checkpointed durably before this
        returns, so an answered DeleteRecords survives a crash.
        """
        if not 0 <= offset <= self.high_watermark:
            raise OffsetOutOfRangeError(
                f"cannot delete records below offset {offset}: the high watermark is "
                f"{self.high_watermark}")
        if offset <= self.log_start_offset:
            return self.log_start_offset
        self._set_log_start_floor(offset)
        self._publish()  # readers stop below it before any file goes
        self._delete_segments_below_log_start()
        self.epochs.truncate_from_start(self.log_start_offset)
        return self.log_start_offset

    def _set_log_start_floor(self, offset: int) -> None:
        self._log_start_floor = offset
        write_atomically(self.directory / LOG_START_OFFSET_CHECKPOINT, b"0\n%d\n" % offset)

    def _segments_below_log_start(self) -> int:
        """How many first segments hold only records below the log start: the
        next segment begins at or before it (the active one always stays)."""
        start, count = self.log_start_offset, 0
        while count + 1 < len(self.segments) and self.segments[count + 1].base_offset <= start:
            count += 1
        return count

    def _delete_segments_below_log_start(self) -> int:
        return self._delete_first_segments(self._segments_below_log_start())

    def _delete_first_segments(self, expired: int) -> int:
        """Delete the first `expired` (closed) segments; how many went."""
        if not expired:
            return 0
        doomed, self.segments = self.segments[:expired], self.segments[expired:]
        self._bases = [s.base_offset for s in self.segments]
        self._layout += 1
        self._publish()  # readers learn the new start before the files go
        for segment in doomed:
            segment.delete()
        fsync_directory(self.directory)
        self.epochs.truncate_from_start(self.log_start_offset)
        return expired


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _lock(directory: Path) -> int:
    """Hold an exclusive flock on the directory's lock file: one writer per partition."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(
            f"partition log {directory} is open by another writer; stop it first"
        ) from None
    return fd


def _segment_bases(directory: Path) -> list[int]:
    """Base offsets of the segments on disk; orphaned index files are removed."""
    bases = set()
    for entry in os.scandir(directory):
        base = parse_segment_name(entry.name)
        if base is not None:
            bases.add(base)
    for entry in os.scandir(directory):
        stem, _, _ = entry.name.partition(".")
        is_index = entry.name.endswith((INDEX_SUFFIX, TIME_INDEX_SUFFIX))
        orphan = is_index and stem.isdigit() and int(stem) not in bases
        if orphan or entry.name.endswith(".tmp"):
            os.unlink(entry.path)
    return sorted(bases)

