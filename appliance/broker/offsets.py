"""Offsets: list offsets (earliest, latest, by time) and the committed-offsets
store of consumer groups, kept in the internal topic __consumer_offsets.

Earliest and latest come from the control blocks; by time asks each
owner, which alone reads its time indexes. A commit is a record batch
appended to the group's partition of __consumer_offsets (chosen by
murmur2 of the group id, as Kafka does) like any produce, answered once
durable; the store is read back from that topic once, on first use.

Record layout in __consumer_offsets (JSON, Ringlog's own):
    key   [group, topic, partition]
    value {"offset": o, "metadata": m, "timestamp": ms}
A deleted group (DeleteGroups) is one record that forgets every earlier
commit of the group:
    key   [group, null, -1]
    value null
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from appliance.broker import replies as r
from appliance.broker.outbox import Outbox
from appliance.broker.produce import Produce
from appliance.broker.readers import PartitionReaders
from appliance.broker.requests import (
    ACKS_ALL,
    EARLIEST,
    LATEST,
    ListOffsetsRequest,
    OffsetFetchRequest,
)
from appliance.broker.worker_calls import WorkerCalls
from appliance.metadata import OFFSETS_TOPIC, Metadata
from appliance.partitioner import partition_for_key
from shm.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    InvalidRequestError,
    NotCoordinatorError,
    RinglogError,
)
from shm.records import Record, encode_batch, iter_batches
from workers import protocol as wp

Committed = dict[tuple[str, int], tuple[int, str]]  # (topic, partition) -> (offset, metadata)


class ListOffsets:
    def __init__(self, metadata: Metadata, readers: PartitionReaders, calls: WorkerCalls,
                 outbox: Outbox):
        self.metadata = metadata
        self.readers = readers
        self.calls = calls
        self.outbox = outbox

    def list_offsets(self, client: Any, request: ListOffsetsRequest) -> None:
        entries = request.partitions
        results: list[r.OffsetForTime | None] = [None] * len(entries)
        by_worker: dict[int, list[int]] = {}
        for i, (topic, partition, timestamp) in enumerate(entries):
            try:
                self.readers.check_leader(topic, partition)
                position = self.readers.position(topic, partition)
                if timestamp == EARLIEST:
                    results[i] = r.OffsetForTime(topic, partition, position.log_start_offset)
                elif timestamp == LATEST:
                    results[i] = r.OffsetForTime(topic, partition, position.high_watermark)
                elif timestamp >= 0:
                    by_worker.setdefault(self.metadata.owner(topic, partition), []).append(i)
                else:
                    raise InvalidRequestError(
                        f"timestamp {timestamp}: use -2 (earliest), -1 (latest) or a time in ms")
            except RinglogError as exc:
                results[i] = r.OffsetForTime(topic, partition, error=exc)

        def part(indices: list[int], answer: wp.OffsetsForTimes) -> None:
            for i, found in zip(indices, answer.results, strict=True):
                results[i] = found

        def lost(indices: list[int], error: RinglogError) -> None:
            for i in indices:
                results[i] = r.OffsetForTime(*entries[i][:2], error=error)

        self.calls.scatter(by_worker, lambda token, indices: wp.ListOffsetsForTimes(
            token, [entries[i] for i in indices]), part, lost,
            lambda: self.outbox.reply(client, r.ListOffsetsReply(results)))  # type: ignore[arg-type]


class CommittedOffsets:
    """Every group's committed offsets, durable in __consumer_offsets.

    A group's offsets live in one partition of it (partition_for); this
    broker coordinates the groups of the partitions it leads, reading each
    one's commits back when it first needs them at a leader epoch (a
    single node leads them all at epoch 0). `leadership(partition)` says
    at which epoch this broker leads an offsets partition, None if it does
    not: its groups then answer NOT_COORDINATOR.
    """

    def __init__(self, metadata: Metadata, readers: PartitionReaders, produce: Produce,
                 leadership: Callable[[int], int | None] = lambda partition: 0):
        self.metadata = metadata
        self.readers = readers
        self.produce = produce
        self.leadership = leadership
        # offsets partition -> (the leader epoch it was read at, its groups' commits)
        self._partitions: dict[int, tuple[int, dict[str, Committed]]] = {}

    def partition_for(self, group: str) -> int:
        """The group's partition of __consumer_offsets (Kafka hashes the group id)."""
        if OFFSETS_TOPIC not in self.metadata.topics:
            raise CoordinatorNotAvailableError(
                f"{OFFSETS_TOPIC} does not exist yet; retry")
        return partition_for_key(group.encode(), self.metadata.topics[OFFSETS_TOPIC].partitions)

    def _of_partition(self, partition: int) -> dict[str, Committed]:
        """The partition's groups' commits, read back at this leader epoch;
        NOT_COORDINATOR where another broker leads it, and
        COORDINATOR_LOAD_IN_PROGRESS until it is open."""
        epoch = self.leadership(partition)
        if epoch is None:
            raise NotCoordinatorError(
                f"this broker does not lead {OFFSETS_TOPIC}-{partition}; find the coordinator")
        known = self._partitions.get(partition)
        if known is not None and known[0] == epoch:
            return known[1]
        cache = self._read(partition, epoch)
        self._partitions[partition] = (epoch, cache)
        return cache

    def _read(self, partition: int, epoch: int) -> dict[str, Committed]:
        """Every commit of the partition. Read only once its worker leads it
        at this epoch and its high watermark has reached its log end: only
        the coordinator appends to it, so nothing is then left uncommitted
        that a later read would find (a new leader's tail becomes committed
        once its followers have it)."""
        try:
            position = self.readers.position(OFFSETS_TOPIC, partition)
        except RinglogError:
            self.readers.forget(OFFSETS_TOPIC, partition)
            raise CoordinatorLoadInProgressError(
                "committed offsets are still loading; retry") from None
        if position.leader_epoch < epoch or position.high_watermark < position.log_end_offset:
            raise CoordinatorLoadInProgressError(
                f"{OFFSETS_TOPIC}-{partition} is becoming this broker's: its commits load once "
                "its followers have them; retry")
        cache: dict[str, Committed] = {}
        offset = position.log_start_offset
        while offset < position.high_watermark:
            data = self.readers.read(OFFSETS_TOPIC, partition, offset, 1 << 20)
            if not data:
                break
            for batch in iter_batches(data):
                for record in batch.records:
                    group, topic, p = orjson.loads(record.key)
                    if topic is None:  # the group was deleted here
                        cache.pop(group, None)
                        continue
                    value = orjson.loads(record.value)
                    cache.setdefault(group, {})[(topic, p)] = (value["offset"],
                                                              value.get("metadata", ""))
                offset = batch.header.next_offset
        return cache

    def coordinates(self, group: str) -> None:
        """Raise unless this broker is the group's coordinator, loaded."""
        self._of_partition(self.partition_for(group))

    def of(self, group: str) -> Committed:
        return self._of_partition(self.partition_for(group)).get(group, {})

    def groups(self) -> set[str]:
        """The groups with commits in the partitions this broker leads."""
        if OFFSETS_TOPIC not in self.metadata.topics:
            return set()
        names: set[str] = set()
        for partition in range(self.metadata.topics[OFFSETS_TOPIC].partitions):
            try:
                names |= set(self._of_partition(partition))
            except NotCoordinatorError:
                continue
        return names

    def fetch(self, request: OffsetFetchRequest) -> r.OffsetFetchReply:
        committed = self.of(request.group_id)
        keys = ([tuple(tp) for tp in request.partitions] if request.partitions is not None
                else sorted(committed))
        return r.OffsetFetchReply([(t, p, *committed.get((t, p), (-1, ""))) for t, p in keys])

    def delete_group(self, group: str, on_done: Callable[[RinglogError | None], None]) -> None:
        """Forget the group's commits, durably (a deletion record, then the cache)."""
        partition = self.partition_for(group)
        committed = self._of_partition(partition)
        now = time.time_ns() // 1_000_000
        batch = encode_batch([Record(key=orjson.dumps([group, None, -1]), value=None,
                                     timestamp=now)])

        def stored(results: list[r.ProduceResult]) -> None:
            error = results[0].error
            if error is not None:
                on_done(CoordinatorNotAvailableError(f"group not deleted: {error}; retry"))
                return
            committed.pop(group, None)
            on_done(None)

        self.produce.append(ACKS_ALL, [(OFFSETS_TOPIC, partition)], [batch], stored)

    def commit(self, group: str, offsets: list[tuple[str, int, int, str]],
               on_done: Callable[[RinglogError | None], None]) -> None:
        """Append the offsets to the group's partition of __consumer_offsets;
        `on_done(error)` once they are as durable as any record (None) or not."""
        partition = self.partition_for(group)
        committed = self._of_partition(partition)
        now = time.time_ns() // 1_000_000
        batch = encode_batch([
            Record(key=orjson.dumps([group, t, p]),
                   value=orjson.dumps({"offset": o, "metadata": m, "timestamp": now}),
                   timestamp=now)
            for t, p, o, m in offsets])

        def stored(results: list[r.ProduceResult]) -> None:
            error = results[0].error
            if error is not None:
                on_done(CoordinatorNotAvailableError(f"offsets not stored: {error}; retry"))
                return
            mine = committed.setdefault(group, {})
            for t, p, o, m in offsets:
                mine[(t, p)] = (o, m)
            on_done(None)

        self.produce.append(ACKS_ALL, [(OFFSETS_TOPIC, partition)], [batch], stored)
