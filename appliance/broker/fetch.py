"""Fetch: whole batches read from the shared maps, long polls parked until
data arrives or their wait is up (Kafka's fetch purgatory).

A fetch is answered at once when it has min_bytes, an error, or no wait;
otherwise it is parked, retried when a worker announces that a partition
it names moved its high watermark, and answered with whatever there is at
its deadline. Nothing here decodes a record: a partition's answer is one
memoryview of the segment map, up to the published high watermark.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.broker import replies as r
from appliance.broker.outbox import Outbox
from appliance.broker.readers import PartitionReaders
from appliance.broker.requests import FetchRequest
from appliance.metrics import RequestMetrics
from shm.errors import RinglogError

MAX_WAIT_MS_LIMIT = 60_000


@dataclass(slots=True)
class _ParkedFetch:
    client: Any
    request: FetchRequest
    deadline: float  # time.monotonic()
    partitions: set[tuple[str, int]]
    started: float  # perf_counter at arrival, for the fetch latency histogram


Watcher = Callable[[list[tuple[str, int, int]]], None]


class Fetch:
    """`on_park(partitions)` hears of every (topic, partition, offset) a parked
    fetch waits past, so that whoever writes them knows to announce them.

    The offset watched is the high watermark the fetch last saw when that is
    beyond its position: a fetch whose min_bytes is not met yet waits for the
    log to grow, not merely to be past its position (which it already is),
    else each announcement would be answered by another watch at once.
    """

    def __init__(self, readers: PartitionReaders, outbox: Outbox, metrics: RequestMetrics,
                 on_park: Watcher | None = None):
        self.readers = readers
        self.outbox = outbox
        self.metrics = metrics
        self.on_park = on_park
        self._parked: list[_ParkedFetch] = []

    def fetch(self, client: Any, request: FetchRequest, now: float) -> None:
        started = time.perf_counter()
        seen = self._try(client, request, final=False, started=started)
        if seen is not None:
            wait_ms = min(max(request.max_wait_ms, 0), MAX_WAIT_MS_LIMIT)
            self._parked.append(_ParkedFetch(
                client, request, now + wait_ms / 1000,
                {(p.topic, p.partition) for p in request.partitions}, started))
            self._watch(request, None, seen)

    def _try(self, client: Any, request: FetchRequest, final: bool, started: float
             ) -> dict[tuple[str, int], int] | None:
        """Read every partition; reply and return None when min_bytes is met, an
        error occurred, the request does not wait, or `final` says time is up;
        else the high watermark seen of each partition, for the next watch."""
        results, total, errors = [], 0, False
        for wanted in request.partitions:
            topic, partition = wanted.topic, wanted.partition
            try:
                budget = min(wanted.max_bytes, request.max_bytes - total)
                # The first partition reads at least one batch, whatever the budget.
                wanted_bytes = max(budget, 1) if budget > 0 or total == 0 else 0
                offsets, data = self.readers.fetch(topic, partition, wanted.offset, wanted_bytes)
                if data is not None:
                    total += len(data)
                results.append(r.PartitionFetchResult(topic, partition, offsets, data))
            except RinglogError as exc:
                results.append(r.PartitionFetchResult(topic, partition, error=exc))
                errors = True
        done = (final or errors or total >= max(request.min_bytes, 1)
                or request.max_wait_ms <= 0)
        if not done:
            return {(result.topic, result.partition): result.offsets.high_watermark
                    for result in results if result.offsets is not None}
        self.outbox.reply(client, r.FetchReply(results))
        for result in results:  # per partition, not per record
            if result.records is not None:
                self.metrics.bytes_out(result.topic, len(result.records))
        self.metrics.observe("fetch", started)
        return None

    def on_positions(self, advanced: set[tuple[str, int]]) -> None:
        """High watermarks moved: retry the long polls waiting on them."""
        still = []
        for parked in self._parked:
            woken = parked.partitions & advanced
            if woken:
                seen = self._try(parked.client, parked.request, final=False,
                                 started=parked.started)
                if seen is None:
                    continue
                self._watch(parked.request, woken, seen)  # not enough yet: watch on
            still.append(parked)
        self._parked = still

    def _watch(self, request: FetchRequest, only: set[tuple[str, int]] | None,
               seen: dict[tuple[str, int], int]) -> None:
        if self.on_park is not None:
            self.on_park([(p.topic, p.partition, max(p.offset, seen.get((p.topic, p.partition),
                                                                         p.offset)))
                          for p in request.partitions
                          if only is None or (p.topic, p.partition) in only])

    def expire(self, now: float) -> None:
        still = []
        for parked in self._parked:
            if parked.deadline <= now:
                self._try(parked.client, parked.request, final=True, started=parked.started)
            else:
                still.append(parked)
        self._parked = still

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._parked), default=None)

    @property
    def parked(self) -> int:
        return len(self._parked)
