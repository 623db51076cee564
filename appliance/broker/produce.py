"""Produce: record sets split by owning worker, answered when every part is in.

The core never looks inside a record set: each goes, as the frame it came
in, to the worker that owns its partition, which validates, appends and
makes it durable (group commit) before answering. A request that names
partitions of several workers is answered once all of them have, or have
failed retriably (worker restarting, died, unreachable).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from appliance.broker import replies as r
from appliance.broker.outbox import Outbox
from appliance.broker.requests import ACKS_ALL, ACKS_LEADER, ACKS_NONE, Frame, ProduceRequest
from appliance.broker.topics import Topics
from appliance.broker.worker_calls import WorkerCalls
from appliance.metadata import INTERNAL_TOPICS, Metadata
from appliance.metrics import RequestMetrics
from shm.errors import (
    InvalidRequestError,
    InvalidRequiredAcksError,
    RinglogError,
    ThrottlingQuotaExceededError,
)
from workers import protocol as wp

Results = list[r.ProduceResult]


def check_produce(request: ProduceRequest) -> None:
    """What every door refuses before anything is appended."""
    if request.acks not in (ACKS_NONE, ACKS_LEADER, ACKS_ALL):
        raise InvalidRequiredAcksError(f"acks must be 0, 1 or -1 (all), not {request.acks}")
    if len(request.partitions) != len(request.record_sets):
        raise InvalidRequestError(
            f"produce names {len(request.partitions)} partitions but carries "
            f"{len(request.record_sets)} record sets; send one frame per partition")


class Produce:
    def __init__(self, metadata: Metadata, topics: Topics, calls: WorkerCalls, outbox: Outbox,
                 metrics: RequestMetrics, max_in_flight: int):
        self.metadata = metadata
        self.topics = topics
        self.calls = calls
        self.outbox = outbox
        self.metrics = metrics
        self.max_in_flight = max_in_flight  # parts of requests waiting for workers

    def produce(self, client: Any, request: ProduceRequest) -> None:
        started = time.perf_counter()
        check_produce(request)
        if len(self.calls) >= self.max_in_flight:
            raise ThrottlingQuotaExceededError(
                f"{len(self.calls)} produce requests in flight; retry shortly")
        refused: dict[int, RinglogError] = {}
        for i, (topic, partition) in enumerate(request.partitions):
            try:
                if topic in INTERNAL_TOPICS:
                    raise InvalidRequestError(f"{topic} is internal: clients cannot write to it")
                self.topics.for_write(topic)
                self.metadata.owner(topic, partition)
                self.metrics.bytes_in(topic, len(request.record_sets[i]))
            except RinglogError as exc:
                refused[i] = exc

        def done(results: Results) -> None:
            self.metrics.observe("produce", started)
            if request.acks != ACKS_NONE:
                self.outbox.reply(client, r.ProduceReply(results))

        self.append(request.acks, request.partitions, request.record_sets, done, refused,
                    request.timeout_ms)

    def append(self, acks: int, partitions: list[tuple[str, int]], record_sets: list[Frame],
               on_done: Callable[[Results], None],
               refused: dict[int, RinglogError] | None = None, timeout_ms: int = 30_000) -> None:
        """Send each owner its record sets; `on_done(results)` once all are answered.
        `refused` are parts already failed (by index), sent nowhere."""
        refused = refused or {}
        results: list[r.ProduceResult | None] = [
            r.ProduceResult(*partitions[i], error=refused[i]) if i in refused else None
            for i in range(len(partitions))]
        by_worker: dict[int, list[int]] = {}
        for i, (topic, partition) in enumerate(partitions):
            if i not in refused:
                by_worker.setdefault(self.metadata.owner(topic, partition), []).append(i)

        def part(indices: list[int], answer: wp.Produced) -> None:
            for i, result in zip(indices, answer.results, strict=True):
                results[i] = result

        def lost(indices: list[int], error: RinglogError) -> None:
            for i in indices:
                results[i] = r.ProduceResult(*partitions[i], error=error)

        def done() -> None:
            on_done(results)  # type: ignore[arg-type]  (every slot is filled by now)

        self.calls.scatter(by_worker, lambda token, indices: wp.Produce(
            token, acks, [partitions[i] for i in indices], [record_sets[i] for i in indices],
            timeout_ms),
            part, lost, done)
