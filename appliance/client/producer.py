"""The producer: records in, Kafka record batches out, futures back.

`send()` places a record in its partition's open batch and returns a small
future pointing into that batch; `send_many()` places a whole list of values
at once. A batch is kept as columns (values, keys, timestamps, headers), the
shape the record encoder takes. A sender thread closes batches when they
reach `batch_size` bytes or have waited `linger_ms`, encodes each once
(shm.records.encode_columns, compressed as asked), and sends every ready
batch in one produce request. Retriable
errors resend the same encoded batch after `retry_backoff_ms`, until
`delivery_timeout_ms`; other errors fail the batch's futures.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field

import zmq

from appliance import protocol
from appliance.client.blocking_connection import BlockingConnection
from appliance.client.connection import DEFAULT_BOOTSTRAP, Connection, raise_for
from appliance.partitioner import DefaultPartitioner, Partitioner, choose_partition
from shm.errors import (
    InvalidRecordError,
    NetworkError,
    RequestTimedOutError,
    RinglogError,
    error_for,
)
from shm.records import encode_columns

ACKS = {"all": protocol.ACKS_ALL, -1: protocol.ACKS_ALL, "-1": protocol.ACKS_ALL,
        1: protocol.ACKS_LEADER, "1": protocol.ACKS_LEADER,
        0: protocol.ACKS_NONE, "0": protocol.ACKS_NONE}
RECORD_OVERHEAD = 16  # a record's varints and attributes, for sizing batches
_CALLBACKS_LOCK = threading.Lock()  # guards every batch's callback list against settle()


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where a record landed."""

    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(eq=False)
class _Batch:
    """Records bound for one partition, sent and acknowledged together, as columns."""

    topic: str
    partition: int
    created: float
    values: list[bytes | None] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    headers: list[tuple] | None = None  # None until a record has headers
    keyed: bool = False  # some key is not None
    callbacks: list[tuple[int, Callable]] = field(default_factory=list)
    size: int = 0
    encoded: bytes | None = None
    deadline: float = 0.0  # delivery timeout
    retry_at: float = 0.0
    settled: threading.Event = field(default_factory=threading.Event)
    base_offset: int = -1
    error: BaseException | None = None

    def metadata(self, index: int) -> RecordMetadata:
        offset = self.base_offset + index if self.base_offset >= 0 else -1
        return RecordMetadata(self.topic, self.partition, offset, self.timestamps[index])

    def set_headers(self, index: int, headers: Sequence[tuple[str, bytes | None]]) -> None:
        """Headers are rare: the column exists only once a record has some."""
        if self.headers is None:
            self.headers = [()] * len(self.values)
        self.headers[index] = tuple(headers)

    def settle(self, base_offset: int, error: BaseException | None) -> None:
        """Record the outcome once, wake waiters, run the records' callbacks."""
        with _CALLBACKS_LOCK:
            self.base_offset, self.error = base_offset, error
            self.settled.set()
            callbacks, self.callbacks = self.callbacks, []
        for index, callback in callbacks:
            callback(RecordFuture(self, index))


class RecordFuture:
    """One record's delivery: the Future-like handle `send()` returns.

    A small object pointing into its batch, which holds the outcome, rather
    than a concurrent.futures.Future per record (whose lock and lists cost
    more than the rest of send()).
    """

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: _Batch, index: int):
        self._batch, self._index = batch, index

    def done(self) -> bool:
        return self._batch.settled.is_set()

    def result(self, timeout: float | None = None) -> RecordMetadata:
        error = self.exception(timeout)
        if error is not None:
            raise error
        return self._batch.metadata(self._index)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self._batch.settled.wait(timeout):
            raise FutureTimeoutError(f"record not acknowledged within {timeout} s")
        return self._batch.error

    def add_done_callback(self, callback: Callable[[RecordFuture], None]) -> None:
        batch = self._batch
        with _CALLBACKS_LOCK:  # so that settle() runs it, or we do: never both
            pending = not batch.settled.is_set()
            if pending:
                batch.callbacks.append((self._index, callback))
        if not pending:
            callback(self)


class Producer:
    """Kafka-style producer; thread-safe."""

    def __init__(self, bootstrap_servers: str | list[str] = DEFAULT_BOOTSTRAP, *,
                 acks: int | str = "all", linger_ms: float = 5, batch_size: int = 65536,
                 compression_type: str | None = None,
                 partitioner: Partitioner | None = None, retry_backoff_ms: int = 100,
                 delivery_timeout_ms: int = 120_000, request_timeout_ms: int = 30_000,
                 max_in_flight_requests: int = 5, enable_idempotence: bool = True,
                 buffer_memory: int = 32 << 20, max_block_ms: int = 60_000):
        if acks not in ACKS:
            raise ValueError(f"acks must be 0, 1 or 'all', not {acks!r}")
        self.acks = ACKS[acks]
        self.linger_s = linger_ms / 1000
        self.batch_size = batch_size
        self.compression = compression_type or "none"
        self.partitioner = partitioner or DefaultPartitioner()
        self.retry_backoff_s = retry_backoff_ms / 1000
        self.delivery_timeout_s = delivery_timeout_ms / 1000
        self.request_timeout_ms = request_timeout_ms
        self.max_in_flight = max_in_flight_requests
        self.enable_idempotence = enable_idempotence
        self.buffer_memory = buffer_memory
        self.max_block_s = max_block_ms / 1000
        self._buffered = 0  # bytes of records sent but not yet acknowledged or failed
        self._producer_id, self._producer_epoch = -1, -1
        self._sequences: dict[tuple[str, int], int] = {}
        self._bootstrap = bootstrap_servers
        # Metadata and producer ids: rare requests, from any thread.
        self._connection = Connection(bootstrap_servers)
        # The sender thread sleeps on its socket and this pipe: callers write
        # a byte when a batch opens or closes, replies wake it by themselves.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._partitions: dict[str, int] = {}
        self._open: dict[tuple[str, int], _Batch] = {}
        self._retries: list[_Batch] = []
        self._in_flight = 0
        self._unfinished = 0
        self._lock = threading.Condition()
        self._closing = False
        self._sender = threading.Thread(target=self._run, name="ringlog-producer", daemon=True)
        self._sender.start()

    # --- the caller's side -------------------------------------------------------------

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             partition: int | None = None, timestamp: int | None = None,
             headers: list[tuple[str, bytes | None]] | None = None,
             on_delivery: Callable[[Exception | None, RecordMetadata | None], None] | None = None,
             ) -> RecordFuture:
        """Queue one record; its RecordFuture resolves to its RecordMetadata.

        `on_delivery(error, metadata)` is called once it is acknowledged or
        has failed, from the producer's own thread.
        """
        try:
            count = self.partitions_for_topic(topic)
            chosen = choose_partition(self.partitioner, topic, key, count, partition)
        except (RinglogError, ValueError) as exc:
            return self._failed(topic, exc, on_delivery)
        size = len(value or b"") + len(key or b"") + RECORD_OVERHEAD
        if headers:
            size += sum(len(k) + len(v or b"") for k, v in headers)
        ts = time.time_ns() // 1_000_000 if timestamp is None else _checked(timestamp)
        with self._lock:
            if self._closing:
                return self._failed(topic, RuntimeError("the producer is closed"), on_delivery)
            if self._buffered + size > self.buffer_memory and self._buffered:
                self._wait_for_room(size)  # bounded memory, as Kafka's buffer.memory
            self._buffered += size
            batch = self._open.get((topic, chosen))
            if batch is None:
                batch = self._open[(topic, chosen)] = _Batch(topic, chosen, time.monotonic())
            index = len(batch.values)
            future = RecordFuture(batch, index)
            batch.values.append(value)
            batch.keys.append(key)
            batch.timestamps.append(ts)
            if key is not None:
                batch.keyed = True
            if batch.headers is not None:
                batch.headers.append(tuple(headers or ()))
            elif headers:
                batch.set_headers(index, headers)
            if on_delivery is not None:
                batch.callbacks.append((index, lambda f: _deliver(f, on_delivery)))
            batch.size += size
            self._unfinished += 1
            if batch.size >= self.batch_size:
                self._close_batch(batch)
                self._wake()
            elif index == 0:
                self._wake()  # the sender must learn this batch's linger deadline
        return future

    def send_many(self, topic: str, values: Sequence[bytes | None], *,
                  partition: int | None = None, timestamp: int | None = None) -> ManyFuture:
        """Queue many values (no keys, no headers) for one partition in one call.

        The bulk path: no future, size sum or lock round per record, so a
        caller with records in hand pays per batch, not per record. The
        partition is `partition`, else the partitioner's choice for a record
        without a key (sticky: one partition for the whole call). All records
        get `timestamp` (default: now). The returned ManyFuture resolves when
        every record is acknowledged, to the list of their RecordMetadata.
        """
        values = list(values)
        try:
            count = self.partitions_for_topic(topic)
            chosen = choose_partition(self.partitioner, topic, None, count, partition)
        except (RinglogError, ValueError) as exc:
            return ManyFuture([(self._failed(topic, exc, None)._batch, 0, len(values))])
        ts = time.time_ns() // 1_000_000 if timestamp is None else _checked(timestamp)
        # Cumulative sizes, so that batch boundaries are found by bisection.
        ends = list(itertools.accumulate(
            len(v) + RECORD_OVERHEAD if v is not None else RECORD_OVERHEAD for v in values))
        spans = []
        start, taken = 0, 0
        while start < len(values):
            with self._lock:
                if self._closing:
                    spans.append((self._failed(topic, RuntimeError("the producer is closed"),
                                               None)._batch, 0, len(values) - start))
                    break
                batch = self._open.get((topic, chosen))
                if batch is None:
                    batch = self._open[(topic, chosen)] = _Batch(topic, chosen,
                                                                 time.monotonic())
                room = max(self.batch_size - batch.size, 1)
                stop = max(bisect_right(ends, taken + room, lo=start), start + 1)
                size = ends[stop - 1] - taken
                if self._buffered + size > self.buffer_memory and self._buffered:
                    self._wait_for_room(size)
                    continue  # the open batch was closed to make room: start a new one
                self._buffered += size
                index = len(batch.values)
                chunk = values[start:stop]
                batch.values += chunk
                batch.keys += [None] * len(chunk)
                batch.timestamps += [ts] * len(chunk)
                if batch.headers is not None:
                    batch.headers += [()] * len(chunk)
                batch.size += size
                self._unfinished += len(chunk)
                spans.append((batch, index, len(chunk)))
                if batch.size >= self.batch_size:
                    self._close_batch(batch)
                self._wake()
            start, taken = stop, taken + size
        return ManyFuture(spans)

    def _wait_for_room(self, size: int) -> None:
        """Block send() until acknowledgements free buffer room, at most max_block_ms.
        Caller holds the lock."""
        deadline = time.monotonic() + self.max_block_s
        for batch in list(self._open.values()):  # what is waiting must go out first
            self._close_batch(batch)
        self._wake()
        while self._buffered + size > self.buffer_memory and self._buffered:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimedOutError(
                    f"buffer of {self.buffer_memory} bytes stayed full for "
                    f"{self.max_block_s:.0f} s; is the appliance reachable?")
            self._lock.wait(remaining)

    @staticmethod
    def _failed(topic: str, error: BaseException, on_delivery: Callable | None) -> RecordFuture:
        """The handle of a record refused before it was batched."""
        batch = _Batch(topic, -1, time.monotonic(), values=[None], keys=[None], timestamps=[-1])
        future = RecordFuture(batch, 0)
        if on_delivery is not None:
            batch.callbacks.append((0, lambda f: _deliver(f, on_delivery)))
        batch.settle(-1, error)
        return future

    def partitions_for_topic(self, topic: str) -> int:
        """The topic's partition count (a metadata request the first time)."""
        count = self._partitions.get(topic)
        if count is None:
            response = self._connection.request("metadata", {"topics": [topic]},
                                                 timeout_ms=self.request_timeout_ms)
            entry = response.fields["topics"][0]
            raise_for(entry)
            count = self._partitions[topic] = len(entry["partitions"])
        return count

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued and wait until each record is acknowledged or failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            for batch in list(self._open.values()):
                self._close_batch(batch)
            self._wake()
            while self._unfinished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RequestTimedOutError(f"{self._unfinished} records still unsent")
                self._lock.wait(remaining if remaining is not None else 0.1)

    def close(self, timeout: float | None = None) -> None:
        try:
            self.flush(timeout)
        finally:
            with self._lock:
                self._closing = True
            self._wake()
            self._sender.join(5)
            self._connection.close()
            if not self._sender.is_alive():
                os.close(self._wake_r)
                os.close(self._wake_w)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- the sender thread -------------------------------------------------------------

    def _close_batch(self, batch: _Batch) -> None:
        """Take a batch out of the open set: it is ready to go. Caller holds the lock."""
        if self._open.get((batch.topic, batch.partition)) is batch:
            del self._open[(batch.topic, batch.partition)]
            if not batch.values:
                return  # opened by send_many(), which then waited for room: nothing to send
            on_new_batch = getattr(self.partitioner, "on_new_batch", None)
            if on_new_batch is not None:
                on_new_batch(batch.topic, batch.partition)
            batch.deadline = time.monotonic() + self.delivery_timeout_s
            self._retries.append(batch)

    def _wake(self) -> None:
        """Wake the sender thread (a byte in its pipe; a full pipe is awake enough)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        """The sender thread: it owns the produce socket, sends ready batches and
        settles their replies itself, so no I/O thread stands in between."""
        connection = BlockingConnection(self._bootstrap, wake_fd=self._wake_r)
        in_flight: dict[int, tuple[list[_Batch], float]] = {}  # request id -> batches, deadline
        ready: list[_Batch] = []
        try:
            while True:
                with self._lock:
                    if self._closing:  # after flush(): whatever is left is abandoned
                        return
                    ready = self._collect_ready()
                    if ready:
                        self._in_flight += 1
                    wait_s = self._wait_s()
                if ready:
                    self._send(connection, ready, in_flight)
                    ready = []
                    continue  # more may be ready: collect again before sleeping
                if in_flight:
                    soonest = min(deadline for _, deadline in in_flight.values())
                    wait_s = min(wait_s, max(0.0, soonest - time.monotonic()))
                connection.wait(int(wait_s * 1000) + 1)
                for response in connection.replies():
                    batches, _ = in_flight.pop(response.id)
                    self._on_reply(batches, response, None)
                now = time.monotonic()
                for request_id, (batches, deadline) in list(in_flight.items()):
                    if deadline <= now:
                        del in_flight[request_id]
                        connection.forget(request_id)
                        self._on_reply(batches, None, RequestTimedOutError(
                            "no reply from the appliance in time; is it running?"))
        finally:
            closed = NetworkError("the producer was closed before the record was acknowledged")
            with self._lock:
                self._in_flight -= len(in_flight)
                left = [b for batches, _ in in_flight.values() for b in batches]
                for batch in [*left, *ready, *self._retries, *self._open.values()]:
                    if not batch.settled.is_set():
                        batch.settle(-1, closed)
                        self._unfinished -= len(batch.values)
                        self._buffered -= batch.size
                self._retries.clear()
                self._open.clear()
                self._lock.notify_all()
            connection.close()

    def _wait_s(self) -> float:
        """How long the sender may sleep: until a linger or retry time comes, but
        with every request slot taken only a reply (which wakes it) can help."""
        if self._in_flight >= self.max_in_flight:
            return 0.5
        now = time.monotonic()
        times = [b.created + self.linger_s for b in self._open.values()]
        times += [b.retry_at for b in self._retries]
        return max(0.0, min(times) - now) if times else 0.5

    def _collect_ready(self) -> list[_Batch]:
        """Batches to send now: closed ones whose retry time has come, and open
        ones that have lingered long enough. Caller holds the lock."""
        if self._in_flight >= self.max_in_flight:
            return []
        now = time.monotonic()
        for batch in list(self._open.values()):
            if now - batch.created >= self.linger_s:
                self._close_batch(batch)
        ready = [b for b in self._retries if b.retry_at <= now]
        taken = {(b.topic, b.partition) for b in ready}
        if len(taken) < len(ready):  # one batch per partition per request keeps order
            unique, seen = [], set()
            for b in ready:
                if (b.topic, b.partition) not in seen:
                    seen.add((b.topic, b.partition))
                    unique.append(b)
            ready = unique
        for b in ready:
            self._retries.remove(b)
        return ready

    def _identity(self) -> tuple[int, int]:
        """The producer id and epoch the appliance hands out, asked for once."""
        if self._producer_id < 0 and self.enable_idempotence:
            fields = self._connection.request("init_producer_id", {},
                                              timeout_ms=self.request_timeout_ms).fields
            self._producer_id, self._producer_epoch = fields["producer_id"], \
                fields["producer_epoch"]
        return self._producer_id, self._producer_epoch

    def _encode(self, batch: _Batch) -> bytes:
        """Encode once: a retry resends these very bytes, sequence numbers and all,
        which is how the partition's owner knows it for a retry."""
        keys = batch.keys if batch.keyed else None
        if not self.enable_idempotence:
            return encode_columns(batch.values, keys, batch.timestamps, batch.headers,
                                  compression=self.compression)
        producer_id, epoch = self._identity()
        key = (batch.topic, batch.partition)
        sequence = self._sequences.get(key, 0)
        self._sequences[key] = (sequence + len(batch.values)) % 2**31
        return encode_columns(batch.values, keys, batch.timestamps, batch.headers,
                              compression=self.compression, producer_id=producer_id,
                              producer_epoch=epoch, base_sequence=sequence)

    def _send(self, connection: BlockingConnection, batches: list[_Batch],
              in_flight: dict[int, tuple[list[_Batch], float]]) -> None:
        """Encode what is not yet encoded and send it as one produce request."""
        payloads, sending, failed = [], [], []
        for batch in batches:
            if batch.encoded is None:
                try:
                    batch.encoded = self._encode(batch)
                except RinglogError as exc:  # no producer id yet: retried after the backoff
                    failed.append((batch, {"error": exc.name, "message": str(exc)}))
                    continue
                except ValueError as exc:  # a field the record format cannot hold
                    failed.append((batch, {"error": InvalidRecordError.name,
                                           "message": str(exc)}))
                    continue
            payloads.append(batch.encoded)
            sending.append(batch)
        if failed:
            with self._lock:
                for batch, result in failed:
                    self._settle(batch, result)
                self._lock.notify_all()
        if not sending:
            self._on_reply([], None, None)  # nothing went out: free the request slot
            return
        fields = {"acks": self.acks, "timeout_ms": self.request_timeout_ms,
                  "partitions": [[b.topic, b.partition] for b in sending]}
        try:
            request_id = connection.send("produce", fields, payloads)
        except (zmq.ZMQError, NetworkError) as exc:  # the socket refused it: retriable
            self._on_reply(sending, None, NetworkError(f"cannot send: {exc}"))
            return
        if self.acks == protocol.ACKS_NONE:
            connection.forget(request_id)  # no reply will come
            self._on_reply(sending, None, None)
        else:
            in_flight[request_id] = (sending, time.monotonic() + self.request_timeout_ms / 1000)

    def _on_reply(self, batches: list[_Batch], response: protocol.Response | None,
                  error: RinglogError | None) -> None:
        """Settle a request's batches: from its reply, its error, or (acks=0) blindly."""
        if error is None and response is not None and response.error:
            error = error_for(response.error, response.message)
        if error is not None:
            results = [{"error": error.name, "message": str(error)}] * len(batches)
        elif response is not None:
            results = response.fields["partitions"]
        else:
            results = [{"error": None, "base_offset": -1}] * len(batches)
        with self._lock:
            self._in_flight -= 1
            for batch, result in zip(batches, results, strict=True):
                self._settle(batch, result)
            self._lock.notify_all()

    def _settle(self, batch: _Batch, result: dict) -> None:
        """Resolve a batch's futures, or put it back for a retry. Caller holds the lock."""
        name = result.get("error")
        if name == "DUPLICATE_SEQUENCE_NUMBER":  # written long ago: delivered, offset unknown
            name, result = None, {"base_offset": -1}
        if name:
            error = error_for(name, result.get("message", ""))
            if name == "UNKNOWN_TOPIC_OR_PARTITION":
                self._partitions.pop(batch.topic, None)
            # A gap in sequences means an earlier batch is still on its way: retry.
            retriable = error.retriable or name == "OUT_OF_ORDER_SEQUENCE_NUMBER"
            if retriable and time.monotonic() + self.retry_backoff_s < batch.deadline:
                batch.retry_at = time.monotonic() + self.retry_backoff_s
                self._retries.append(batch)
                return
            batch.settle(-1, error)
        else:
            batch.settle(result.get("base_offset", -1), None)
        self._unfinished -= len(batch.values)
        self._buffered -= batch.size


class ManyFuture:
    """The delivery of one send_many() call: spans (batch, first index, count)."""

    __slots__ = ("_spans",)

    def __init__(self, spans: list[tuple[_Batch, int, int]]):
        self._spans = spans

    def done(self) -> bool:
        return all(batch.settled.is_set() for batch, _, _ in self._spans)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The first error of any batch, after waiting for all (at most `timeout` s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for batch, _, _ in self._spans:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not batch.settled.wait(remaining):
                raise FutureTimeoutError(f"records not acknowledged within {timeout} s")
        return next((b.error for b, _, _ in self._spans if b.error is not None), None)

    def result(self, timeout: float | None = None) -> list[RecordMetadata]:
        error = self.exception(timeout)
        if error is not None:
            raise error
        return [batch.metadata(i) for batch, first, count in self._spans
                for i in range(first, first + count)]


def _checked(timestamp: int) -> int:
    """Refuse, as Kafka's send() does, a timestamp a record cannot carry."""
    if not 0 <= timestamp < 2**63:
        raise ValueError(f"timestamp {timestamp} is not milliseconds since the epoch "
                         "(0 to 2**63-1); pass None for now")
    return timestamp


def _deliver(future: RecordFuture, callback: Callable) -> None:
    error = future.exception()
    callback(error, None if error else future.result())
