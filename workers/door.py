"""The worker's client door: produce and fetch straight to the partition's writer.

A produce through the front end crosses two processes and four ZeroMQ hops
(client, supervisor, worker, supervisor, client) and a fetch long-polling
for it waits on a positions message through the supervisor's loop. At the
door the client talks to the worker that owns the partition: the request
is appended in the worker's tick, answered right after the group commit
that made it durable, and the long polls parked here are woken by that
same commit, with no message to anyone. The supervisor hands the door's
endpoint out in metadata (per partition) and stays the front end for
everything else; a client that has no endpoint for a partition produces
and fetches through the front end as before, with the same answers.

Sans I/O, as the broker core: `request()` takes a client's frames and
returns what the worker must append; replies wait in `drain()` for the
loop that owns the socket. The native protocol (appliance.protocol) is the
wire; fetches reuse the core's purgatory (appliance.broker.fetch) over the
worker's own logs.
"""

from __future__ import annotations

import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance import protocol
from appliance.broker import replies as r
from appliance.broker.fetch import Fetch
from appliance.broker.outbox import ClientReply, Outbox
from appliance.broker.produce import check_produce
from appliance.broker.requests import (
    ACKS_NONE,
    FetchRequest,
    ProduceRequest,
)
from appliance.metadata import INTERNAL_TOPICS
from appliance.native import NativeClient, decode_request, encode_reply
from shm import PartitionLog
from shm.errors import (
    InvalidRequestError,
    NotLeaderOrFollowerError,
    RinglogError,
    UnsupportedVersionError,
)
from workers.protocol import ProduceResult, Traffic

Frame = Any
TopicPartition = tuple[str, int]
DOOR_APIS = ("produce", "fetch")


@dataclass
class DoorProduce:
    """A client's produce for the worker to append: its parts, in request
    order, with those refused before the append already answered."""

    client: NativeClient
    acks: int
    started: float
    parts: list[tuple[str, int, Frame]]  # topic, partition, record set
    refused: dict[int, RinglogError] = field(default_factory=dict)  # by index
    timeout_ms: int = 30_000  # how long acks=all may wait for the in-sync replicas


class TrafficTally:
    """The counts /metrics shows for the front end, kept for the door's requests
    and handed to the supervisor as one Traffic message now and then."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.requests: dict[str, int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.latencies: dict[str, list[float]] = {}
        self.bytes_in_: dict[str, int] = {}
        self.bytes_out_: dict[str, int] = {}

    def request(self, api: str) -> None:
        self.requests[api] = self.requests.get(api, 0) + 1

    def error(self, api: str, error: str) -> None:
        self.errors[(api, error)] = self.errors.get((api, error), 0) + 1

    def observe(self, api: str, started: float) -> None:
        self.latencies.setdefault(api, []).append(time.perf_counter() - started)

    def bytes_in(self, topic: str, size: int) -> None:
        self.bytes_in_[topic] = self.bytes_in_.get(topic, 0) + size

    def bytes_out(self, topic: str, size: int) -> None:
        self.bytes_out_[topic] = self.bytes_out_.get(topic, 0) + size

    def take(self) -> Traffic | None:
        """Everything counted since the last take, or None when nothing was."""
        if not self.requests and not self.errors:  # malformed frames count only as errors
            return None
        traffic = Traffic(self.requests, [(a, e, n) for (a, e), n in self.errors.items()],
                          self.latencies, self.bytes_in_, self.bytes_out_)
        self._reset()
        return traffic


class OwnLogs:
    """The fetch purgatory's view of partitions: this worker's own logs (in
    a cluster, only those it leads: `leading`, None on a single node)."""

    def __init__(self, logs: dict[TopicPartition, PartitionLog], index: int,
                 leading: Container[TopicPartition] | None = None):
        self.logs = logs
        self.index = index
        self.leading = leading

    def fetch(self, topic: str, partition: int, offset: int, max_bytes: int
              ) -> tuple[r.PartitionOffsets, bytes | None]:
        log = self.logs.get((topic, partition))
        if log is None or (self.leading is not None and (topic, partition) not in self.leading):
            # moved, deleted, never ours, or a follower's: the client asks metadata again
            raise NotLeaderOrFollowerError(
                f"partition {topic}-{partition} is not served at worker {self.index}'s door")
        offsets = r.PartitionOffsets(log.log_start_offset, log.log_end_offset,
                                     log.high_watermark)
        data = log.read(offset, max_bytes) if max_bytes > 0 else None
        return offsets, data or None


class ClientDoor:
    """Native produce and fetch requests from clients, for one worker."""

    def __init__(self, logs: dict[TopicPartition, PartitionLog], index: int,
                 leading: Container[TopicPartition] | None = None):
        self.outbox = Outbox()
        self._raw: list[tuple[bytes, list[Frame]]] = []  # replies already encoded
        self.traffic = TrafficTally()
        self.fetches = Fetch(OwnLogs(logs, index, leading), self.outbox, self.traffic)

    def request(self, identity: bytes, frames: Sequence[Frame]) -> DoorProduce | None:
        """Take one client message: a produce to append (returned), a fetch
        served or parked here, or an error reply for anything else."""
        try:
            client, request = decode_request(identity, frames)
        except protocol.ProtocolError as exc:
            self.traffic.error("unknown", exc.error.name)
            self._raw.append((identity, exc.reply))
            return None
        self.traffic.request(client.api)
        try:
            if isinstance(request, ProduceRequest):
                return self._produce(client, request)
            if isinstance(request, FetchRequest):
                self.fetches.fetch(client, request, time.monotonic())
                return None
            raise UnsupportedVersionError(
                f"{client.api} is served by the front end (listeners), not at a worker's "
                f"door, which serves {' and '.join(DOOR_APIS)}")
        except RinglogError as exc:
            self.traffic.error(client.api, exc.name)
            self.outbox.reply(client, r.ErrorReply(exc))
        except (TypeError, ValueError) as exc:  # a value the codec's checks let through
            self.traffic.error(client.api, InvalidRequestError.name)
            self.outbox.reply(client, r.ErrorReply(InvalidRequestError(f"{client.api}: {exc}")))
        return None

    def _produce(self, client: NativeClient, request: ProduceRequest) -> DoorProduce:
        """The front end's checks, then the parts for the worker to append."""
        check_produce(request)
        job = DoorProduce(client, request.acks, time.perf_counter(), [],
                          timeout_ms=request.timeout_ms)
        for i, ((topic, partition), record_set) in enumerate(
                zip(request.partitions, request.record_sets, strict=True)):
            if topic in INTERNAL_TOPICS:
                job.refused[i] = InvalidRequestError(
                    f"{topic} is internal: clients cannot write to it")
            self.traffic.bytes_in(topic, len(record_set))
            job.parts.append((topic, partition, record_set))
        return job

    def produced(self, job: DoorProduce, results: list[ProduceResult]) -> None:
        """The job's appends are durable (or failed): answer, unless acks=0."""
        self.traffic.observe("produce", job.started)
        if job.acks != ACKS_NONE:
            self.outbox.reply(job.client, r.ProduceReply(results))

    def advanced(self, partitions: set[TopicPartition]) -> None:
        """High watermarks moved: the long polls parked on them may answer now."""
        self.fetches.on_positions(partitions)

    def expire(self, now: float) -> None:
        self.fetches.expire(now)

    def next_deadline(self) -> float | None:
        return self.fetches.next_deadline()

    def drain(self) -> list[tuple[bytes, list[Frame]]]:
        """(ROUTER identity, frames) of every reply due, in order."""
        out = self._raw
        self._raw = []
        for event in self.outbox.drain():
            assert isinstance(event, ClientReply)
            client = event.client
            out.append((client.identity, encode_reply(client, event.reply)))
        return out
