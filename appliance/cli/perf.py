"""`ringlog perf produce|consume|e2e`: throughput and latency against a running
appliance, as Kafka's kafka-producer-perf-test and kafka-consumer-perf-test.

- produce: send --num-records records of --record-size bytes, at most
  --throughput records/s; latency is each record's send() to its
  acknowledgement.
- consume: read --num-records records from the start of the topic as a new
  consumer group; latency is per poll() that returned records (Kafka's
  consumer perf test reports no latency; per record it would only be the
  position of the record in its poll).
- e2e: a producer stamps its wall-clock send time into each value, a
  consumer thread in the same process takes receive time minus that stamp.

Each prints records/s, MB/s (10^6 bytes of record values) and latency avg,
p50, p95, p99, p99.9 and max in ms, or with --json exactly one JSON object.
Every run is bounded by --num-records and by --timeout seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from appliance.cli.command import (
    DEFAULT_TIMEOUT_MS,
    EXIT_USAGE,
    Fail,
    bootstrap_option,
    client_command,
)
from appliance.cli.perf_measure import (
    BAR_INTERVAL_S,
    STAMP,
    AckWaiter,
    Progress,
    Result,
    Throttle,
    latency_summary,
    payload_pool,
    stamp,
    unstamp,
)

CLOSE_TIMEOUT_S = 2.0  # a client's close() at the end, or after a failure or Ctrl-C
POLL_MS = 500  # one poll's wait: keeps the deadline and progress checks frequent
MAX_POLL_RECORDS = 500  # Kafka's max.poll.records default: what one poll of consume returns
DEFAULT_RUN_TIMEOUT_S = 300.0


@click.group()
def perf() -> None:
    """Measure throughput and latency, like Kafka's producer and consumer perf tests."""


@dataclass(frozen=True)
class Settings:
    """What every perf command was asked for."""

    bootstrap: str
    topic: str
    num_records: int
    request_timeout_ms: int
    timeout_s: float

    def deadline(self) -> float:
        return time.monotonic() + self.timeout_s

    def too_slow(self, done: int, verb: str) -> Fail:
        return Fail(f"only {done} of {self.num_records} records {verb} within --timeout "
                    f"{self.timeout_s:g} s; raise --timeout or lower --num-records")


def _check_throughput(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    if value != -1 and value <= 0:
        raise click.BadParameter(f"{value:g} is not a rate: give records/s > 0, or -1 for no cap")
    return value


def common_options(fn: Callable) -> Callable:
    """Options every perf command takes."""
    for option in reversed([
        click.option("--topic", required=True, help="the topic to write or read"),
        click.option("--num-records", type=click.IntRange(min=1), required=True,
                     help="records to send or read"),
        click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
                     default=DEFAULT_RUN_TIMEOUT_S, show_default=True, metavar="SECONDS",
                     help="give up (exit 1) if the run takes longer than this"),
        click.option("--request-timeout-ms", type=click.IntRange(min=1),
                     default=DEFAULT_TIMEOUT_MS, show_default=True,
                     help="how long to wait for the appliance to answer a request"),
        click.option("--json", "as_json", is_flag=True,
                     help="print the result as one JSON object instead of a line of text"),
        bootstrap_option,
    ]):
        fn = option(fn)
    return fn


def producer_options(fn: Callable) -> Callable:
    """The producer's settings, for produce and e2e."""
    for option in reversed([
        click.option("--record-size", type=click.IntRange(min=1), default=100,
                     show_default=True, help="bytes of each record's value"),
        click.option("--throughput", type=float, default=-1, show_default=True,
                     callback=_check_throughput,
                     help="cap on records sent per second; -1 for no cap"),
        click.option("--acks", type=click.Choice(["0", "1", "all", "-1"]), default="all",
                     show_default=True, help="acknowledgement each record waits for"),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="producer batch.size in bytes (default: the producer's, 65536)"),
        click.option("--linger-ms", type=click.FloatRange(min=0), default=None,
                     help="producer linger.ms (default: the producer's, 5)"),
        click.option("--compression", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]),
                     default="none", show_default=True, help="producer compression.type"),
        click.option("--partitions", type=click.IntRange(min=1), default=1, show_default=True,
                     help="partitions of the topic if this command creates it"),
    ]):
        fn = option(fn)
    return fn


def _emit(result: Result, as_json: bool) -> None:
    click.echo(json.dumps(result.to_json()) if as_json else result.text())


def _settings(kwargs: dict[str, Any]) -> Settings:
    return Settings(kwargs["bootstrap_server"], kwargs["topic"], kwargs["num_records"],
                    kwargs["request_timeout_ms"], kwargs["timeout_s"])


def _describe(s: Settings, create_partitions: int | None) -> list[dict]:
    """The topic's partitions; created first (with `create_partitions`) if it
    does not exist and the command writes to it."""
    from appliance.client import Admin
    from shm.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

    with Admin(s.bootstrap, request_timeout_ms=s.request_timeout_ms) as admin:
        try:
            return admin.describe_topic(s.topic).get("partitions") or []
        except UnknownTopicOrPartitionError:
            if create_partitions is None:
                raise Fail(f"topic {s.topic!r} does not exist; write to it first, e.g. "
                           f"ringlog perf produce --topic {s.topic} --num-records "
                           f"{s.num_records}") from None
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topic(s.topic, create_partitions)
        return admin.describe_topic(s.topic).get("partitions") or []


def _producer(s: Settings, options: dict[str, Any]):
    from appliance.client import Producer

    settings: dict[str, Any] = {
        "acks": options["acks"], "request_timeout_ms": s.request_timeout_ms,
        "delivery_timeout_ms": int(s.timeout_s * 1000), "max_block_ms": int(s.timeout_s * 1000),
        "compression_type": None if options["compression"] == "none" else options["compression"]}
    if options["batch_size"] is not None:
        settings["batch_size"] = options["batch_size"]
    if options["linger_ms"] is not None:
        settings["linger_ms"] = options["linger_ms"]
    return Producer(s.bootstrap, **settings)


def _close(client: Any, **kwargs: Any) -> None:
    """Close a client at the end without letting its errors hide the run's."""
    with contextlib.suppress(Exception):
        client.close(**kwargs)


def _send_all(s: Settings, producer: Any, waiter: AckWaiter, throughput: float,
              value_for: Callable[[int], bytes], progress: Progress,
              done: Callable[[], int], deadline: float) -> None:
    """Send the records, paced by the throttle, until all are sent, one has
    failed or the deadline passes; then flush."""
    throttle = Throttle(throughput, time.monotonic())
    for i in range(s.num_records):
        now = time.monotonic()
        if waiter.error is not None or now > deadline:
            return
        delay = throttle.delay(i, now)
        if delay > 0:
            time.sleep(delay)
        value = value_for(i)
        waiter.add(time.perf_counter_ns(), producer.send(s.topic, value))
        progress.tick(done())
    with contextlib.suppress(Exception):  # an unsent record fails its future: the waiter says
        producer.flush(timeout=max(0.001, deadline - time.monotonic()))


def _wait(thread: threading.Thread, progress: Progress, done: Callable[[], int],
          deadline: float) -> None:
    """Join `thread` by the deadline, showing progress meanwhile."""
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(min(BAR_INTERVAL_S, max(0.001, deadline - time.monotonic())))
        progress.tick(done())


@perf.command("produce")
@common_options
@producer_options
@client_command()
def produce(**options: Any) -> None:
    """Send records to a topic as fast as allowed; latency is send to acknowledgement."""
    s = _settings(options)
    _describe(s, options["partitions"])
    pool = payload_pool(options["record_size"])
    deadline = s.deadline()
    producer = _producer(s, options)
    waiter = AckWaiter(s.num_records, deadline)
    progress = Progress(s.num_records, "acknowledged")
    try:
        waiter.start()
        started = time.perf_counter_ns()
        _send_all(s, producer, waiter, options["throughput"], lambda i: pool[i % len(pool)],
                  progress, lambda: waiter.acked, deadline)
        _wait(waiter, progress, lambda: waiter.acked, deadline)
    finally:
        waiter.stop()
        progress.close(waiter.acked)
        _close(producer, timeout=CLOSE_TIMEOUT_S)
    if waiter.error is not None:
        raise waiter.error
    if waiter.acked < s.num_records:
        raise s.too_slow(waiter.acked, "acknowledged")
    _emit(Result("produce", waiter.acked, waiter.acked * options["record_size"],
                 (waiter.last_ack_ns - started) / 1e9, waiter.latencies_ms), options["as_json"])


@perf.command("consume")
@common_options
@click.option("--group", default=None,
              help="consumer group to read as (default: a new one, so the topic is read "
                   "from its start)")
@click.option("--max-poll-records", type=click.IntRange(min=1), default=MAX_POLL_RECORDS,
              show_default=True, help="consumer max.poll.records: records one poll returns")
@client_command()
def consume(group: str | None, max_poll_records: int, **options: Any) -> None:
    """Read records from the start of a topic; latency is per poll() that returned records."""
    from appliance.client import Consumer

    s = _settings(options)
    partitions = _describe(s, create_partitions=None)
    stored = sum(max(0, (p.get("high_watermark") or 0) - (p.get("log_start_offset") or 0))
                 for p in partitions)
    if stored < s.num_records:
        raise Fail(f"topic {s.topic!r} holds {stored} records, fewer than --num-records "
                   f"{s.num_records}; lower it or write more first (ringlog perf produce)",
                   EXIT_USAGE)
    group = group or f"ringlog-perf-{os.urandom(4).hex()}"
    deadline = s.deadline()
    consumer = Consumer(bootstrap_servers=s.bootstrap, group_id=group,
                        auto_offset_reset="earliest", request_timeout_ms=s.request_timeout_ms)
    latencies, count, size, polls = array("d"), 0, 0, 0
    progress = Progress(s.num_records, "read")
    try:
        joining = time.perf_counter_ns()
        consumer.subscribe([s.topic])
        # The clock starts with the first poll that returns records: before it the
        # group is joining (a new group waits group.initial.rebalance.delay.ms),
        # which join_ms reports apart, as Kafka's consumer perf tool reports its
        # rebalance time apart from its fetch time.
        started = last = None
        while count < s.num_records:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise s.too_slow(count, "read")
            polled = time.perf_counter_ns()
            messages = consumer.poll(timeout_ms=min(POLL_MS, remaining_ms),
                                     max_records=min(max_poll_records, s.num_records - count))
            if messages:
                last = time.perf_counter_ns()
                started = polled if started is None else started
                latencies.append((last - polled) / 1e6)
                polls += 1
                count += len(messages)
                size += sum(len(m.value or b"") + len(m.key or b"") for m in messages)
            progress.tick(count)
    finally:
        progress.close(count)
        _close(consumer)
    if started is None or last is None:  # no records at all: nothing was timed
        started = last = joining
    _emit(Result("consume", count, size, (last - started) / 1e9, latencies,
                 {"group": group, "polls": polls,
                  "join_ms": round((started - joining) / 1e6, 3)}), options["as_json"])


class Receiver(threading.Thread):
    """The e2e consumer: positioned at the end of every partition before the
    first record is sent, then notes receive time minus each stamped send time."""

    def __init__(self, s: Settings, run_id: int, deadline: float):
        super().__init__(name="ringlog-perf-e2e", daemon=True)
        self.s, self.run_id, self.deadline = s, run_id, deadline
        self.latencies_ms = array("d")
        self.received = 0
        self.last_ns = 0  # time.time_ns() of the last record received
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        from appliance.client import Consumer

        consumer = None
        try:
            consumer = Consumer(bootstrap_servers=self.s.bootstrap, auto_offset_reset="latest",
                                request_timeout_ms=self.s.request_timeout_ms)
            consumer.subscribe([self.s.topic])
            consumer.seek_to_end()  # resolved now: records sent from here on are all seen
            self.ready.set()
            self._receive(consumer)
        except Exception as exc:
            self.error = exc
        finally:
            self.ready.set()
            if consumer is not None:
                _close(consumer)

    def _receive(self, consumer: Any) -> None:
        while self.received < self.s.num_records and not self.stopping.is_set():
            remaining_ms = int((self.deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return
            messages = consumer.poll(timeout_ms=min(POLL_MS, remaining_ms))
            now = time.time_ns()
            for message in messages:
                stamped = unstamp(message.value)
                if stamped is None or stamped[0] != self.run_id:
                    continue  # someone else's record
                self.latencies_ms.append((now - stamped[1]) / 1e6)
                self.received += 1
                self.last_ns = now


@perf.command("e2e")
@common_options
@producer_options
@client_command()
def e2e(**options: Any) -> None:
    """Produce and consume at once; latency is receive time minus the send time
    stamped in each value."""
    s = _settings(options)
    if options["record_size"] < STAMP.size:
        raise Fail(f"--record-size must be at least {STAMP.size} for e2e: each value carries "
                   "a run id and its send time", EXIT_USAGE)
    _describe(s, options["partitions"])
    pool = [value[STAMP.size:] for value in payload_pool(options["record_size"])]
    run_id = int.from_bytes(os.urandom(8), "big")
    deadline = s.deadline()
    receiver = Receiver(s, run_id, deadline)
    receiver.start()
    receiver.ready.wait(max(0.001, deadline - time.monotonic()))
    if receiver.error is not None or not receiver.ready.is_set():
        receiver.stopping.set()
        if receiver.error is not None:
            raise receiver.error
        raise s.too_slow(0, "received")
    producer = _producer(s, options)
    waiter = AckWaiter(s.num_records, deadline)
    progress = Progress(s.num_records, "received")
    try:
        waiter.start()
        started = time.time_ns()
        _send_all(s, producer, waiter, options["throughput"],
                  lambda i: stamp(run_id, time.time_ns(), pool[i % len(pool)]),
                  progress, lambda: receiver.received, deadline)
        _wait(waiter, progress, lambda: receiver.received, deadline)
        if waiter.error is None:
            _wait(receiver, progress, lambda: receiver.received, deadline)
    finally:
        receiver.stopping.set()
        waiter.stop()
        progress.close(receiver.received)
        _close(producer, timeout=CLOSE_TIMEOUT_S)
    for error in (waiter.error, receiver.error):
        if error is not None:
            raise error
    if receiver.received < s.num_records:
        raise s.too_slow(receiver.received, "received")
    ack = {k: round(v, 3) for k, v in latency_summary(waiter.latencies_ms).items()}
    _emit(Result("e2e", receiver.received, receiver.received * options["record_size"],
                 (receiver.last_ns - started) / 1e9, receiver.latencies_ms,
                 {"ack_latency_ms": ack}), options["as_json"])
