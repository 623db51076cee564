"""A broker core on real storage, with no processes: the test is its loop.

`Cluster.run()` plays the supervisor's loop in-process: it drains the
core's outbox, keeps client replies, and carries worker messages to
`LocalWorkers`, which serve them with real PartitionLogs in a temporary
directory (append, fdatasync, answer) and hand the answers back. Held
messages let a test choose when (or whether) a worker answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from appliance import protocol
from appliance.broker import Broker, ClientReply, PartitionReaders
from appliance.config import load_config
from appliance.metadata import OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIGS, Metadata
from appliance.metrics import RequestMetrics
from shm import LogConfig, PartitionLog
from shm.errors import RinglogError
from workers import protocol as wp


@dataclass
class LocalWorkers:
    """The workers' side of the protocol, on real logs, in this process."""

    logs: dict[tuple[str, int], PartitionLog] = field(default_factory=dict)

    def serve(self, message: wp.ToWorker) -> list[wp.FromWorker]:
        if isinstance(message, wp.Open):
            for entry in message.partitions:
                key = (entry.topic, entry.partition)
                if key not in self.logs:
                    self.logs[key] = PartitionLog.open(Path(entry.directory),
                                                       LogConfig(**entry.log_config))
            return [wp.Opened([wp.OpenResult(p.topic, p.partition) for p in message.partitions])]
        if isinstance(message, wp.Produce):
            results = []
            for (topic, partition), records in zip(message.partitions, message.record_sets,
                                                   strict=True):
                log = self.logs[(topic, partition)]
                base = log.append(records)
                log.flush()
                results.append(wp.ProduceResult(topic, partition, base))
            positions = [(t, p, self.logs[(t, p)].high_watermark) for t, p in message.partitions]
            return [wp.Produced(message.token, results), wp.Positions(positions)]
        if isinstance(message, wp.ListOffsetsForTimes):
            return [wp.OffsetsForTimes(message.token, [
                wp.OffsetForTime(t, p, *(self.logs[(t, p)].record_at_or_after(ts) or (-1, -1)))
                for t, p, ts in message.partitions])]
        if isinstance(message, wp.DeleteRecords):
            results = []
            for t, p, offset in message.partitions:
                log = self.logs[(t, p)]
                try:
                    start = log.advance_log_start_offset(
                        log.high_watermark if offset == wp.DELETE_TO_HIGH_WATERMARK else offset)
                    results.append(wp.DeleteRecordsResult(t, p, start))
                except RinglogError as exc:
                    results.append(wp.DeleteRecordsResult(t, p, error=exc))
            return [wp.RecordsDeleted(message.token, results)]
        if isinstance(message, wp.Close):
            for t, p, _ in message.partitions:
                log = self.logs.pop((t, p), None)
                if log is not None:
                    log.close()
            return [wp.Closed([(t, p) for t, p, _ in message.partitions])]
        return []

    def close(self) -> None:
        for log in self.logs.values():
            log.close()


@dataclass
class Cluster:
    broker: Broker
    workers: LocalWorkers
    replies: dict[Any, list] = field(default_factory=dict)  # client -> replies, in order
    held: list[tuple[int, wp.ToWorker]] = field(default_factory=list)
    hold: set[int] = field(default_factory=set)  # workers whose messages wait in `held`
    sent: list[tuple[int, wp.ToWorker]] = field(default_factory=list)

    def run(self) -> None:
        """Drain the outbox until nothing moves (the supervisor's loop, in-process)."""
        while events := self.broker.drain():
            for event in events:
                if isinstance(event, ClientReply):
                    self.replies.setdefault(event.client, []).append(event.reply)
                    continue
                self.sent.append((event.worker, event.message))
                if event.worker in self.hold:
                    self.held.append((event.worker, event.message))
                else:
                    self.deliver(event.worker, event.message)

    def deliver(self, worker: int, message: wp.ToWorker) -> None:
        for answer in self.workers.serve(message):
            # Through the wire format, as the real loop does.
            self.broker.on_worker_message(worker, wp.parse(answer.encode()))

    def release(self) -> None:
        held, self.held = self.held, []
        for worker, message in held:
            self.deliver(worker, message)
        self.run()

    def call(self, client: Any, request: Any) -> list:
        self.broker.handle(client, request)
        self.run()
        return self.replies.get(client, [])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A core with two workers, both ready, and the offsets topic created."""
    config = load_config(overrides=[f"log.dirs={tmp_path}", "num.workers=2",
                                    "offsets.topic.num.partitions=2"], environ={})
    metadata = Metadata(tmp_path, 2)
    metadata.create(OFFSETS_TOPIC, 2, 1, dict(OFFSETS_TOPIC_CONFIGS))
    broker = Broker(config, metadata, PartitionReaders(metadata),
                    RequestMetrics(protocol.SCHEMAS, CollectorRegistry()))
    cluster = Cluster(broker, LocalWorkers())
    for worker in (0, 1):
        broker.on_worker_message(worker, wp.Ready(worker, 0))
    cluster.run()
    yield cluster
    broker.close()
    cluster.workers.close()
