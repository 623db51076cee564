"""The four workloads every peer runs, what one measurement holds, and the
timing they share: a deadline per workload (also for asyncio clients), the
clock that paces W3, and W3's consumer in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import time
from array import array
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from loadtest.harness import (
    TAIL_PERCENTILES,
    VALUE_POOL,
    BenchTimeout,
    Deadline,
    latency_summary,
    make_values,
)

__all__ = ["VALUE_POOL", "BenchTimeout", "Deadline", "make_values"]

WORKLOADS = ("W1", "W2", "W3", "W4")
VALUE_BYTES = 100  # W1, W2, W3
W4_VALUE_BYTES = 1024
WARM_UP_RECORDS = 10  # W3: connection and first round trip, stamped 0 and not measured
MB = 1e6

WHAT = {
    "W1": f"produce {VALUE_BYTES} B",
    "W2": f"consume {VALUE_BYTES} B",
    "W3": f"end-to-end {VALUE_BYTES} B",
    "W4": f"produce {W4_VALUE_BYTES} B",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """What to run: the same plan for every peer."""

    records: int
    rate: int
    seconds: float
    timeout: float
    workloads: tuple[str, ...]
    runs: int = 1  # the whole comparison, back to back, to see its spread


@dataclass
class Measurement:
    """One workload on one peer: timed records, or the error that stopped it."""

    workload: str
    peer: str
    settings: str = ""
    records: int = 0
    value_bytes: int = VALUE_BYTES
    seconds: float = 0.0
    latency_ms: dict[str, float] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The producer call of a W1 row when the peer reports W1 more than once
    # (Ringlog: "send", one call per record, and "send_many"); "" otherwise.
    call: str = ""

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds and not self.error else 0.0

    @property
    def mbps(self) -> float:
        return self.rate * self.value_bytes / MB

    @property
    def label(self) -> str:
        """The row's name in the tables: the peer, and the call if it has one."""
        return f"{self.peer} ({self.call})" if self.call else self.peer


@dataclass
class Run:
    """One pass of the whole comparison: every peer's measurements in peer order."""

    measurements: list[Measurement]
    load: tuple[float, float]  # load average at its start and end
    seconds: float


def deadline_for(workload: str, peer: str, plan: Plan) -> Deadline:
    """The workload's time bound; its message names the workload and the peer."""
    return Deadline(f"{workload} on {peer}", plan.timeout)


async def within(deadline: Deadline, work: Awaitable[T]) -> T:
    """Await `work` no longer than the deadline allows: the asyncio clients'
    calls block in the event loop, where Deadline.check() is never reached."""
    try:
        return await asyncio.wait_for(work, max(0.001, deadline.remaining()))
    except TimeoutError:
        raise deadline.timeout() from None


def paced(rate: int, total: int) -> Iterator[tuple[int, float]]:
    """W3's clock: (records due now, seconds to wait after sending them).

    Records fall due at `rate` per second from the first call; a sender that
    fell behind gets every overdue record at once, as a Kafka producer with
    linger_ms=0 would batch what queued while a request was in flight."""
    period = 1.0 / rate
    began = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - began) / period) + 1)
        count, sent = due - sent, due
        yield count, max(0.0, began + sent * period - time.perf_counter())


def stamped(value_bytes: int, padding: bytes | None = None) -> bytes:
    """A W3 value: the send time, time.time_ns() as 8 big-endian bytes, then zeros."""
    return time.time_ns().to_bytes(8, "big") + (padding or bytes(value_bytes - 8))


def warm_up_value(value_bytes: int) -> bytes:
    return bytes(value_bytes)  # stamp 0: the consumer does not measure it


def check_read_back(got: int, last: bytes, records: int, value_bytes: int,
                    stream: str) -> None:
    """W2 counts only if every record came back, the last one whole."""
    if got != records or len(last) != value_bytes:
        raise RuntimeError(f"W2 read {got:,} records of {stream}, expected {records:,}")


def e2e_summary(received_ns: Sequence[int]) -> dict[str, float]:
    """p50, p99, p99.9 and max of end-to-end latency in milliseconds, as the bench's W3."""
    summary = latency_summary((v / 1e6 for v in received_ns), TAIL_PERCENTILES)
    del summary["avg"]
    return {**summary, "received": len(received_ns)}


class LatencyReceiver:
    """The consumer process's end of W3's pipes: says it is positioned, keeps
    receive time minus send time per record, and knows when to stop."""

    def __init__(self, ready: Any, control: Any, results: Any):
        self._ready, self._control, self._results = ready, control, results
        self._expected: int | None = None
        self.latencies = array("q")

    def positioned(self) -> None:
        """Tell the producer side that records sent from now on will be seen."""
        self._ready.send(True)

    def receive(self, values: Iterable[bytes], now_ns: int | None = None) -> None:
        now_ns = now_ns or time.time_ns()
        for value in values:
            sent = int.from_bytes(value[:8], "big")
            if sent:
                self.latencies.append(now_ns - sent)

    def done(self) -> bool:
        """True once the producer has said how many records to expect and they
        all arrived, or it said -1 (give up)."""
        if self._control.poll():
            self._expected = self._control.recv()
        if self._expected is None:
            return False
        return self._expected < 0 or len(self.latencies) >= self._expected

    def report(self) -> None:
        self._results.send(self.latencies.tobytes())


def _consumer_main(target: Callable[..., None], *args: Any) -> None:
    """The consumer process ignores Ctrl-C: the terminal sends it to the whole
    process group, and the parent stops the child itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    target(*args)


class LatencyProbe:
    """W3's consumer, run as `target(*args, receiver)` in a spawned process so
    that it does not share the producer's GIL."""

    START_TIMEOUT_S = 60.0
    DRAIN_TIMEOUT_S = 30.0

    def __init__(self, target: Callable[..., None], *args: Any):
        ctx = multiprocessing.get_context("spawn")
        self._ready_r, ready_w = ctx.Pipe(duplex=False)
        control_r, self._control_w = ctx.Pipe(duplex=False)
        self._results_r, results_w = ctx.Pipe(duplex=False)
        receiver = LatencyReceiver(ready_w, control_r, results_w)
        self._child = ctx.Process(target=_consumer_main, args=(target, *args, receiver),
                                  name="ringlog-peers-consumer", daemon=True)

    def start(self, deadline: Deadline) -> None:
        """Start the consumer and wait until it is positioned on the stream."""
        self._child.start()
        if not self._ready_r.poll(max(1.0, min(self.START_TIMEOUT_S, deadline.remaining()))):
            code = self._child.exitcode
            raise BenchTimeout(f"{deadline.what}: the consumer process was not ready within "
                               f"{self.START_TIMEOUT_S:.0f} s"
                               + (f" (it exited with {code})" if code is not None else ""))
        try:
            self._ready_r.recv()
        except EOFError:
            self._child.join(5)
            raise RuntimeError(f"{deadline.what}: the consumer process exited with "
                               f"{self._child.exitcode} before it was ready") from None

    def finish(self, total: int, deadline: Deadline) -> dict[str, float]:
        """Tell the consumer how many records were sent; its latency summary."""
        self._control_w.send(total)
        wait = max(1.0, min(self.DRAIN_TIMEOUT_S, deadline.remaining()))
        if not self._results_r.poll(wait):
            raise BenchTimeout(f"{deadline.what}: the consumer had not received {total:,} "
                               f"records {wait:.0f} s after the last send")
        received = array("q")
        received.frombytes(self._results_r.recv())
        return e2e_summary(received)

    def close(self) -> None:
        """Stop the consumer whatever happened; never leaves the process behind."""
        if self._child.is_alive():
            with contextlib.suppress(OSError):
                self._control_w.send(-1)
            self._child.join(5)
        if self._child.is_alive():
            self._child.terminate()
            self._child.join(5)
        if self._child.is_alive():
            self._child.kill()
            self._child.join(5)
