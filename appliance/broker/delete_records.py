"""DeleteRecords (Kafka's API 21): each partition's owner advances its log
start offset, and the core merges the owners' answers.

Only the owning worker writes a log, so the core checks what it can alone
(the topic exists and is not internal, this broker leads the partition, the
offset is not below -1) and sends each owner its partitions, answering
once every owner has: each new low watermark is then checkpointed. A
worker that dies or restarts first fails its part retriably.

Internal topics are refused with INVALID_TOPIC_EXCEPTION, as Kafka's
ReplicaManager refuses them: __consumer_offsets is read back from its log
start when a coordinator loads, so deleting from it would drop groups'
committed offsets.
"""

from __future__ import annotations

from typing import Any

from appliance.broker import replies as r
from appliance.broker.outbox import Outbox
from appliance.broker.readers import PartitionReaders
from appliance.broker.requests import DELETE_TO_HIGH_WATERMARK, DeleteRecordsRequest
from appliance.broker.worker_calls import WorkerCalls
from appliance.metadata import INTERNAL_TOPICS, Metadata
from shm.errors import InvalidTopicError, OffsetOutOfRangeError, RinglogError
from workers import protocol as wp


class DeleteRecords:
    def __init__(self, metadata: Metadata, readers: PartitionReaders, calls: WorkerCalls,
                 outbox: Outbox):
        self.metadata = metadata
        self.readers = readers
        self.calls = calls
        self.outbox = outbox

    def delete_records(self, client: Any, request: DeleteRecordsRequest) -> None:
        entries = request.partitions
        results: list[r.DeleteRecordsResult | None] = [None] * len(entries)
        by_worker: dict[int, list[int]] = {}
        for i, (topic, partition, offset) in enumerate(entries):
            try:
                by_worker.setdefault(self._owner(topic, partition, offset), []).append(i)
            except RinglogError as exc:
                results[i] = r.DeleteRecordsResult(topic, partition, error=exc)

        def part(indices: list[int], answer: wp.RecordsDeleted) -> None:
            for i, result in zip(indices, answer.results, strict=True):
                results[i] = result

        def lost(indices: list[int], error: RinglogError) -> None:
            for i in indices:
                results[i] = r.DeleteRecordsResult(*entries[i][:2], error=error)

        self.calls.scatter(by_worker, lambda token, indices: wp.DeleteRecords(
            token, [tuple(entries[i]) for i in indices]), part, lost,
            lambda: self.outbox.reply(client, r.DeleteRecordsReply(results)))  # type: ignore[arg-type]

    def _owner(self, topic: str, partition: int, offset: int) -> int:
        """The worker that writes the partition, or the error that refuses it."""
        if topic in INTERNAL_TOPICS:
            raise InvalidTopicError(f"cannot delete records of internal topic {topic}")
        owner = self.metadata.owner(topic, partition)  # unknown, or not hosted here
        self.readers.check_leader(topic, partition)
        if offset < DELETE_TO_HIGH_WATERMARK:
            raise OffsetOutOfRangeError(
                f"offset {offset} is negative; use -1 for the high watermark")
        return owner
