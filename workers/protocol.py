"""The supervisor-worker protocol: one typed message per kind, with its frames.

Workers talk to the supervisor over one DEALER (the worker) - ROUTER (the
supervisor) pair on an ipc endpoint. The ROUTER adds and strips the peer's
identity frame, `worker_identity(index)`; every message that follows is::

    frame 0      kind: the message's KIND, e.g. b"produce"
    frame 1      token (only kinds that are answered: produce, list_offsets,
                 delete_records and their answers): the supervisor's id for the request
    frame next   body: one orjson document (lists, never per-record data)
    frame rest   record sets, one per partition (produce only), untouched

    supervisor -> worker                      worker -> supervisor
      Open       open or reconfigure          Ready      started, pid, its client door
      Close      close, maybe delete          Opened     per partition: error or None
      Produce    append record sets           Produced   per partition: base offset or error
      ListOffsetsForTimes                     OffsetsForTimes  per partition: offset or error
      Watch      long polls wait on these     Positions  watched high watermarks that moved
      Stop       flush, close and exit        Traffic    what its door served (metrics)
      Lead       lead at an epoch, this ISR   Closed     partitions closed (and removed)
      Follow     fetch from this leader       IsrChange  an ISR the leader wants written
                                              FollowerLag  followed partitions' lag
      DeleteRecords  advance log starts       RecordsDeleted  per partition: low watermark

Clients also produce and fetch straight to a worker, at its door (a ROUTER
of its own speaking the native protocol, workers/door.py): the supervisor
hands the door's endpoint out in metadata and is not on that path.

Errors cross as classes of the shared registry (shm.errors): encoded as the
Kafka error name and a message, parsed back into the exception instance.
This module does no I/O: `encode` gives frames, `parse` takes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from shm.errors import RinglogError, error_for

Frame = Any  # bytes, memoryview or zmq.Frame: anything with the buffer protocol
TopicPartition = tuple[str, int]

_IDENTITY_PREFIX = b"worker-"


def worker_identity(index: int) -> bytes:
    """The ZeroMQ identity of worker `index` on the supervisor's ROUTER."""
    return b"%s%d" % (_IDENTITY_PREFIX, index)


def worker_index(identity: bytes) -> int:
    """The index named by a worker's identity frame (ValueError if it is not one)."""
    if not identity.startswith(_IDENTITY_PREFIX):
        raise ValueError(f"{identity!r} is not a worker identity")
    return int(identity[len(_IDENTITY_PREFIX):])


def worker_name(index: int) -> str:
    """The worker as operators see it: in `ringlog status` and in ps."""
    return worker_identity(index).decode()


def _error_fields(error: RinglogError | None) -> list:
    return [None, ""] if error is None else [error.name, str(error)]


def _error(name: str | None, message: str) -> RinglogError | None:
    return None if name is None else error_for(name, message)


def _bytes(frame: Frame) -> bytes:
    return frame.bytes if hasattr(frame, "bytes") else bytes(frame)


def _body(frame: Frame) -> Any:
    return orjson.loads(frame.buffer if hasattr(frame, "buffer") else frame)


# --- supervisor -> worker ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PartitionToOpen:
    topic: str
    partition: int
    directory: str
    log_config: dict[str, Any]  # LogConfig's fields


@dataclass(frozen=True, slots=True)
class Open:
    """Open these partitions, or give those already open their new log config."""

    KIND: ClassVar[bytes] = b"open"
    partitions: list[PartitionToOpen]

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps([[p.topic, p.partition, p.directory, p.log_config]
                                         for p in self.partitions])]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Open:
        return cls([PartitionToOpen(*entry) for entry in _body(frames[1])])


@dataclass(frozen=True, slots=True)
class Close:
    """Close partitions; with `delete`, also remove their directories (a
    directory is given for a partition the worker may not have open)."""

    KIND: ClassVar[bytes] = b"close"
    partitions: list[tuple[str, int, str]]  # topic, partition, directory
    delete: bool = False

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps([[list(p) for p in self.partitions], self.delete])]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Close:
        partitions, delete = _body(frames[1])
        return cls([tuple(p) for p in partitions], delete)


@dataclass(frozen=True, slots=True)
class Produce:
    """Append one record set per partition; answered by Produced with the
    same token once the appends are as durable as the flush policy says
    (for acks=0 too: the supervisor must retire the request)."""

    KIND: ClassVar[bytes] = b"produce"
    token: bytes
    acks: int
    partitions: list[TopicPartition]
    record_sets: list[Frame] = field(default_factory=list)
    timeout_ms: int = 30_000  # how long acks=all may wait for the in-sync replicas

    def encode(self) -> list[Frame]:
        return [self.KIND, self.token,
                orjson.dumps([self.acks, self.partitions, self.timeout_ms]), *self.record_sets]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Produce:
        acks, partitions, timeout_ms = _body(frames[2])
        return cls(_bytes(frames[1]), acks, [tuple(p) for p in partitions], list(frames[3:]),
                   timeout_ms)


@dataclass(frozen=True, slots=True)
class ListOffsetsForTimes:
    """The first offset at or after each timestamp: only the owner reads the
    time indexes. Answered by OffsetsForTimes with the same token."""

    KIND: ClassVar[bytes] = b"list_offsets"
    token: bytes
    partitions: list[tuple[str, int, int]]  # topic, partition, timestamp ms

    def encode(self) -> list[Frame]:
        return [self.KIND, self.token, orjson.dumps(self.partitions)]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> ListOffsetsForTimes:
        return cls(_bytes(frames[1]), [tuple(p) for p in _body(frames[2])])


@dataclass(frozen=True, slots=True)
class Stop:
    """Flush, close every log and exit."""

    KIND: ClassVar[bytes] = b"stop"

    def encode(self) -> list[Frame]:
        return [self.KIND]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Stop:
        return cls()


@dataclass(frozen=True, slots=True)
class Watch:
    """A long poll of the front end waits on these partitions: announce their
    high watermarks once they pass these offsets (at once if they already
    have). One-shot: Positions clears the watch, and a fetch that still waits
    watches again. Without a watch a worker sends no Positions at all, so a
    produce at the door costs the supervisor nothing."""

    KIND: ClassVar[bytes] = b"watch"
    partitions: list[tuple[str, int, int]]  # topic, partition, offset the fetch waits past

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps(self.partitions)]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Watch:
        return cls([tuple(p) for p in _body(frames[1])])


@dataclass(frozen=True, slots=True)
class PartitionLeader:
    """A partition this worker leads, as ZooKeeper has its state now."""

    topic: str
    partition: int
    leader_epoch: int
    replicas: list[int]
    isr: list[int]
    min_insync_replicas: int = 1


@dataclass(frozen=True, slots=True)
class Lead:
    """Lead these partitions. At a new leader epoch: become the leader (the
    log's epoch starts at its end); at the epoch already led: ZooKeeper's ISR
    is now this one (it confirms or overrules an IsrChange)."""

    KIND: ClassVar[bytes] = b"lead"
    partitions: list[PartitionLeader]

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps([
            [p.topic, p.partition, p.leader_epoch, p.replicas, p.isr, p.min_insync_replicas]
            for p in self.partitions])]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Lead:
        return cls([PartitionLeader(*entry) for entry in _body(frames[1])])


@dataclass(frozen=True, slots=True)
class PartitionFollower:
    """A partition this worker follows: its leader's epoch and replication
    ROUTER; an empty endpoint when it has no reachable leader (stop fetching)."""

    topic: str
    partition: int
    leader_epoch: int
    endpoint: str


@dataclass(frozen=True, slots=True)
class Follow:
    """Follow these partitions (resigning any leadership of them first)."""

    KIND: ClassVar[bytes] = b"follow"
    partitions: list[PartitionFollower]

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps([[p.topic, p.partition, p.leader_epoch, p.endpoint]
                                         for p in self.partitions])]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Follow:
        return cls([PartitionFollower(*entry) for entry in _body(frames[1])])


# --- worker -> supervisor ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ready:
    """The worker started and connected; it owns nothing until told to open.
    `door` is where clients reach it for produce and fetch (tcp://HOST:PORT)."""

    KIND: ClassVar[bytes] = b"ready"
    index: int
    pid: int
    door: str = ""
    replication: str = ""  # its replication ROUTER (cluster mode), followers fetch there

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps([self.index, self.pid, self.door, self.replication])]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Ready:
        return cls(*_body(frames[1]))


@dataclass(frozen=True, slots=True)
class OpenResult:
    topic: str
    partition: int
    error: RinglogError | None = None


@dataclass(frozen=True, slots=True)
class Opened:
    KIND: ClassVar[bytes] = b"opened"
    partitions: list[OpenResult]

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps([[r.topic, r.partition, *_error_fields(r.error)]
                                         for r in self.partitions])]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Opened:
        return cls([OpenResult(t, p, _error(name, message))
                    for t, p, name, message in _body(frames[1])])


@dataclass(frozen=True, slots=True)
class ProduceResult:
    """One partition's part of a produce: its base offset, or why not."""

    topic: str
    partition: int
    base_offset: int = -1
    log_append_time: int = -1
    error: RinglogError | None = None


@dataclass(frozen=True, slots=True)
class Produced:
    KIND: ClassVar[bytes] = b"produced"
    token: bytes
    results: list[ProduceResult]

    def encode(self) -> list[Frame]:
        return [self.KIND, self.token, orjson.dumps([
            [r.topic, r.partition, r.base_offset, r.log_append_time, *_error_fields(r.error)]
            for r in self.results])]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Produced:
        return cls(_bytes(frames[1]), [
            ProduceResult(t, p, base, append_time, _error(name, message))
            for t, p, base, append_time, name, message in _body(frames[2])])


@dataclass(frozen=True, slots=True)
class OffsetForTime:
    """The offset and timestamp of the first record at or after a time (-1, -1: none)."""

    topic: str
    partition: int
    offset: int = -1
    timestamp: int = -1
    error: RinglogError | None = None


@dataclass(frozen=True, slots=True)
class OffsetsForTimes:
    KIND: ClassVar[bytes] = b"offsets_for_times"
    token: bytes
    results: list[OffsetForTime]

    def encode(self) -> list[Frame]:
        return [self.KIND, self.token, orjson.dumps([
            [r.topic, r.partition, r.offset, r.timestamp, *_error_fields(r.error)]
            for r in self.results])]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> OffsetsForTimes:
        return cls(_bytes(frames[1]), [
            OffsetForTime(t, p, offset, timestamp, _error(name, message))
            for t, p, offset, timestamp, name, message in _body(frames[2])])


@dataclass(frozen=True, slots=True)
class Positions:
    """High watermarks that moved: the supervisor wakes long polls on them."""

    KIND: ClassVar[bytes] = b"positions"
    partitions: list[tuple[str, int, int]]  # topic, partition, high watermark

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps(self.partitions)]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Positions:
        return cls([tuple(p) for p in _body(frames[1])])


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the worker's door served since the last Traffic: the supervisor
    adds it to /metrics. Per request and per topic, never per record."""

    KIND: ClassVar[bytes] = b"traffic"
    requests: dict[str, int] = field(default_factory=dict)  # api -> requests
    errors: list[tuple[str, str, int]] = field(default_factory=list)  # api, error, count
    latencies: dict[str, list[float]] = field(default_factory=dict)  # api -> seconds
    bytes_in: dict[str, int] = field(default_factory=dict)  # topic -> record-set bytes
    bytes_out: dict[str, int] = field(default_factory=dict)

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps([self.requests, self.errors, self.latencies,
                                         self.bytes_in, self.bytes_out])]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Traffic:
        requests, errors, latencies, bytes_in, bytes_out = _body(frames[1])
        return cls(requests, [tuple(e) for e in errors], latencies, bytes_in, bytes_out)


@dataclass(frozen=True, slots=True)
class Closed:
    KIND: ClassVar[bytes] = b"closed"
    partitions: list[TopicPartition]

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps(self.partitions)]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> Closed:
        return cls([tuple(p) for p in _body(frames[1])])


@dataclass(frozen=True, slots=True)
class IsrChange:
    """The leader wants these ISRs written (followers lagging or caught up);
    the supervisor writes each conditionally and answers with Lead."""

    KIND: ClassVar[bytes] = b"isr_change"
    partitions: list[tuple[str, int, int, list[int]]]  # topic, partition, leader epoch, isr

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps(self.partitions)]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> IsrChange:
        return cls([(t, p, epoch, list(isr)) for t, p, epoch, isr in _body(frames[1])])


@dataclass(frozen=True, slots=True)
class FollowerLag:
    """How far each partition this worker follows is behind its leader's log
    end, as of the last fetch answer (for /metrics)."""

    KIND: ClassVar[bytes] = b"follower_lag"
    partitions: list[tuple[str, int, int]]  # topic, partition, messages behind

    def encode(self) -> list[Frame]:
        return [self.KIND, orjson.dumps(self.partitions)]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> FollowerLag:
        return cls([tuple(p) for p in _body(frames[1])])


# --- DeleteRecords: both directions --------------------------------------------------

DELETE_TO_HIGH_WATERMARK = -1  # DeleteRecords' offset for "every committed record", as Kafka's


@dataclass(frozen=True, slots=True)
class DeleteRecords:
    """Advance each partition's log start offset to an offset (-1: its high
    watermark), as Kafka's DeleteRecords; only the owner (in a cluster, the
    leader) writes it. Answered by RecordsDeleted with the same token once
    each new log start is checkpointed."""

    KIND: ClassVar[bytes] = b"delete_records"
    token: bytes
    partitions: list[tuple[str, int, int]]  # topic, partition, offset

    def encode(self) -> list[Frame]:
        return [self.KIND, self.token, orjson.dumps(self.partitions)]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> DeleteRecords:
        return cls(_bytes(frames[1]), [tuple(p) for p in _body(frames[2])])


@dataclass(frozen=True, slots=True)
class DeleteRecordsResult:
    """One partition's new low watermark (its log start offset), or why not."""

    topic: str
    partition: int
    low_watermark: int = -1
    error: RinglogError | None = None


@dataclass(frozen=True, slots=True)
class RecordsDeleted:
    KIND: ClassVar[bytes] = b"records_deleted"
    token: bytes
    results: list[DeleteRecordsResult]

    def encode(self) -> list[Frame]:
        return [self.KIND, self.token, orjson.dumps([
            [r.topic, r.partition, r.low_watermark, *_error_fields(r.error)]
            for r in self.results])]

    @classmethod
    def parse(cls, frames: Sequence[Frame]) -> RecordsDeleted:
        return cls(_bytes(frames[1]), [
            DeleteRecordsResult(t, p, low_watermark, _error(name, message))
            for t, p, low_watermark, name, message in _body(frames[2])])


ToWorker = (Open | Close | Produce | ListOffsetsForTimes | Watch | Stop | Lead | Follow
            | DeleteRecords)
FromWorker = (Ready | Opened | Produced | OffsetsForTimes | Positions | Traffic | Closed
              | IsrChange | FollowerLag | RecordsDeleted)
Message = ToWorker | FromWorker

_KINDS: dict[bytes, type] = {cls.KIND: cls for cls in (
    Open, Close, Produce, ListOffsetsForTimes, Watch, Stop, Lead, Follow, DeleteRecords,
    Ready, Opened, Produced, OffsetsForTimes, Positions, Traffic, Closed, IsrChange,
    FollowerLag, RecordsDeleted)}


class ProtocolError(ValueError):
    """Frames that are not a message of this protocol (a bug, never user input)."""


def parse(frames: Sequence[Frame]) -> Message:
    """The message the frames hold (without the ROUTER's identity frame)."""
    if not frames:
        raise ProtocolError("an empty worker message")
    kind = _bytes(frames[0])
    cls = _KINDS.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown worker message kind {kind!r}")
    try:
        return cls.parse(frames)
    except (IndexError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed {kind.decode()} message: {exc}") from None
