"""The measuring side of `ringlog perf`: latency percentiles, rates,
Kafka's throughput throttle, payloads, e2e stamps, progress and the
acknowledgement waiter. Knows nothing of click's commands, so it is
unit-tested on its own."""

from __future__ import annotations

import os
import queue
import struct
import sys
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import click

# one percentile for `ringlog perf` and every benchmark: docs/performance.md, "Percentiles"
from loadtest.harness import latency_summary, percentile  # noqa: F401 (percentile: re-exported)

MB = 1_000_000  # MB/s as Kafka's perf tools print it: 10^6 bytes
PROGRESS_INTERVAL_S = 5.0  # a plain progress line this often when stderr is not a terminal
BAR_INTERVAL_S = 0.2  # redraws of the progress bar on a terminal
POOL_BYTES = 16 << 20  # at most this much random payload is kept, however large the records
POOL_VALUES = 64  # distinct payloads cycled through, so compression sees more than one value
STAMP = struct.Struct(">QQ")  # e2e value prefix: run id, send time in ns since the epoch
_LETTERS = bytes(65 + i % 26 for i in range(256))  # byte -> 'A'..'Z', as Kafka's payloads


@dataclass
class Result:
    """One run's totals; `seconds` is the timed interval the rates divide by."""

    test: str
    records: int
    bytes: int
    seconds: float
    latencies_ms: Sequence[float]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def records_per_sec(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_sec(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        latency = {k: round(v, 3) for k, v in latency_summary(self.latencies_ms).items()}
        return {"test": self.test, "records": self.records, "bytes": self.bytes,
                "seconds": round(self.seconds, 6),
                "records_per_sec": round(self.records_per_sec, 1),
                "mb_per_sec": round(self.mb_per_sec, 3), "latency_ms": latency, **self.extra}

    def text(self) -> str:
        """One line in the words of Kafka's producer perf test."""
        what = {"produce": ("sent", "latency"), "consume": ("read", "poll latency"),
                "e2e": ("sent and received", "end-to-end latency")}[self.test]
        s = latency_summary(self.latencies_ms)
        line = (f"{self.records} records {what[0]} in {self.seconds:.2f} s, "
                f"{self.records_per_sec:.1f} records/sec ({self.mb_per_sec:.2f} MB/sec), "
                f"{what[1]} {s['avg']:.2f} ms avg, {s['p50']:.2f} ms 50th, "
                f"{s['p95']:.2f} ms 95th, {s['p99']:.2f} ms 99th, {s['p999']:.2f} ms 99.9th, "
                f"{s['max']:.2f} ms max.")
        details = ", ".join(f"{k} {v}" for k, v in self.extra.items() if not isinstance(v, dict))
        return f"{line} ({details})" if details else line


class Throttle:
    """Kafka's throughput throttle: record i is due at start + i / rate, so a
    run that fell behind catches up and the mean rate stays at the cap."""

    def __init__(self, records_per_sec: float, start: float):
        self.rate = records_per_sec
        self.start = start

    def delay(self, sent: int, now: float) -> float:
        """Seconds to wait before record number `sent` (from 0) may go; 0 uncapped."""
        if self.rate <= 0:
            return 0.0
        return max(0.0, self.start + sent / self.rate - now)


def payload_pool(record_size: int) -> list[bytes]:
    """Random upper-case letters, as Kafka's perf test sends: compressible like
    text, not like zeros. Several values, within POOL_BYTES in all."""
    count = max(1, min(POOL_VALUES, POOL_BYTES // max(record_size, 1)))
    return [os.urandom(record_size).translate(_LETTERS) for _ in range(count)]


def stamp(run_id: int, sent_ns: int, padding: bytes) -> bytes:
    """An e2e value: who sent it and when, then padding up to the record size."""
    return STAMP.pack(run_id, sent_ns) + padding


def unstamp(value: bytes | None) -> tuple[int, int] | None:
    """(run id, send time in ns) of an e2e value; None for anything else."""
    if value is None or len(value) < STAMP.size:
        return None
    return STAMP.unpack_from(value)


class Progress:
    """Progress on stderr: a bar on a terminal, a plain line every
    PROGRESS_INTERVAL_S otherwise (logs and CI keep those); nothing on stdout,
    which holds the result."""

    def __init__(self, total: int, verb: str, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stderr
        self.total, self.verb, self.clock = total, verb, clock
        self.shown = 0
        self.last = self.started = clock()
        self.bar = None
        if self.stream.isatty():
            self.bar = click.progressbar(length=total, label=f"records {verb}", file=self.stream,
                                         show_pos=True)
            self.bar.__enter__()

    def tick(self, done: int) -> None:
        """Show `done` if it is time to; cheap enough to call for every record."""
        now = self.clock()
        interval = BAR_INTERVAL_S if self.bar is not None else PROGRESS_INTERVAL_S
        if now - self.last < interval:
            return
        if self.bar is not None:
            self.bar.update(done - self.shown)
        else:
            rate = (done - self.shown) / (now - self.last)
            print(f"{done} of {self.total} records {self.verb}, {rate:.1f} records/sec "
                  f"over the last {now - self.last:.1f} s", file=self.stream, flush=True)
        self.shown, self.last = done, now

    def close(self, done: int) -> None:
        """Finish the bar at `done`, so that it ends where the run did."""
        if self.bar is not None:
            self.bar.update(done - self.shown)
            self.bar.__exit__(None, None, None)
            self.bar = None


class AckWaiter(threading.Thread):
    """Waits for each record's future in send order and notes send-to-ack time.

    Only the futures' result() is used. A record acknowledged before one sent
    earlier (another partition) is noted when the earlier one is: records
    of one partition are acknowledged in order, so with one partition this is
    exact, and otherwise it errs on the high side by the gap between them.
    """

    def __init__(self, expected: int, deadline: float):
        super().__init__(name="ringlog-perf-acks", daemon=True)
        self.expected, self.deadline = expected, deadline
        self.latencies_ms = array("d")
        self.acked = 0
        self.last_ack_ns = 0
        self.error: BaseException | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def add(self, sent_ns: int, future: Any) -> None:
        self._queue.put((sent_ns, future))

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        while self.acked < self.expected:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return
            if item is None:
                return
            sent_ns, future = item
            try:
                future.result(timeout=max(0.001, self.deadline - time.monotonic()))
            except TimeoutError:
                return
            except Exception as exc:  # the record failed: the run stops with its error
                self.error = exc
                return
            now = time.perf_counter_ns()
            self.latencies_ms.append((now - sent_ns) / 1e6)
            self.acked += 1
            self.last_ack_ns = now
