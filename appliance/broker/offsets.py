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
    """Every group's committed offsets, durable in __consumer_offsets."""

    def __init__(self, metadata: Metadata, readers: PartitionReaders, produce: Produce):
        self.metadata = metadata
        self.readers = readers
        self.produce = produce
        self._committed: dict[str, Committed] | None = None  # None until loaded

    def load(self) -> dict[str, Committed]:
        """Read the committed offsets back from __consumer_offsets, once;
        COORDINATOR_LOAD_IN_PROGRESS until every partition of it is open."""
        if self._committed is not None:
            return self._committed
        cache: dict[str, Committed] = {}
        for partition in range(self.metadata.get(OFFSETS_TOPIC).partitions):
            try:
                position = self.readers.position(OFFSETS_TOPIC, partition)
            except RinglogError:
                self.readers.forget(OFFSETS_TOPIC, partition)
                raise CoordinatorLoadInProgressError(
                    "committed offsets are still loading; retry") from None
            offset = position.log_start_offset
            while offset < position.high_watermark:
                data = self.readers.read(OFFSETS_TOPIC, partition, offset, 1 << 20)
                if not data:
                    break
                for batch in iter_batches(data):
                    for record in batch.records:
                        group, topic, p = orjson.loads(record.key)
                        value = orjson.loads(record.value)
                        cache.setdefault(group, {})[(topic, p)] = (value["offset"],
                                                                  value.get("metadata", ""))
                    offset = batch.header.next_offset
        self._committed = cache
        return cache

    def of(self, group: str) -> Committed:
        return self.load().get(group, {})

    def groups(self) -> set[str]:
        return set(self.load())

    def fetch(self, request: OffsetFetchRequest) -> r.OffsetFetchReply:
        committed = self.of(request.group_id)
        keys = ([tuple(tp) for tp in request.partitions] if request.partitions is not None
                else sorted(committed))
        return r.OffsetFetchReply([(t, p, *committed.get((t, p), (-1, ""))) for t, p in keys])

    def commit(self, group: str, offsets: list[tuple[str, int, int, str]],
               on_done: Callable[[RinglogError | None], None]) -> None:
        """Append the offsets to the group's partition of __consumer_offsets;
        `on_done(error)` once they are as durable as any record (None) or not."""
        committed = self.load()
        now = time.time_ns() // 1_000_000
        batch = encode_batch([
            Record(key=orjson.dumps([group, t, p]),
                   value=orjson.dumps({"offset": o, "metadata": m, "timestamp": now}),
                   timestamp=now)
            for t, p, o, m in offsets])
        partition = partition_for_key(group.encode(),
                                      self.metadata.get(OFFSETS_TOPIC).partitions)

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
