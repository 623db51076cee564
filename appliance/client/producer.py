"""The producer: records in, Kafka record batches out, futures back, as Kafka's
KafkaProducer.

`send()` places a record in its partition's open batch and returns a small
future pointing into that batch (producer_batch.py); `send_many()` places a
whole list of values at once. Where the C accumulator is built,
`send()` is its C method (appliance/client/_accumulator.c), which does the
common record itself and hands every other call to `_python_send()`, the
reference (RINGLOG_PYTHON_SEND=1 makes every record take the Python path).
The batches wait in the record accumulator (record_accumulator.py), which
the Producer extends, until the sender thread (sender.py) finds them ready,
sends them to each partition's leader (its worker door) and settles their
futures. `bootstrap_servers` is one HOST:PORT or several (a comma string or
a list): metadata goes to the first that answers (bootstrap.py).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence

from appliance import protocol
from appliance.client.bootstrap import Bootstrap
from appliance.client.connection import DEFAULT_BOOTSTRAP, Connection, raise_for
from appliance.client.producer_batch import (
    NATIVE,
    ManyFuture,
    ProducerBatch,
    RecordFuture,
    RecordMetadata,
)
from appliance.client.record_accumulator import RECORD_OVERHEAD, RecordAccumulator
from appliance.client.sender import Sender
from appliance.partitioner import DefaultPartitioner, Partitioner, choose_partition
from shm.allocator import keep_freed_memory
from shm.errors import RequestTimedOutError, RinglogError

__all__ = ["ACKS", "ManyFuture", "Producer", "RecordFuture", "RecordMetadata"]

ACKS = {"all": protocol.ACKS_ALL, -1: protocol.ACKS_ALL, "-1": protocol.ACKS_ALL,
        1: protocol.ACKS_LEADER, "1": protocol.ACKS_LEADER,
        0: protocol.ACKS_NONE, "0": protocol.ACKS_NONE}


class Producer(RecordAccumulator):
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
        self.request_timeout_ms = request_timeout_ms
        keep_freed_memory()  # the sender encodes a batch.size buffer per batch
        self._partitions: dict[str, int] = {}
        # Metadata and producer ids: rare requests, from any thread, to the
        # first bootstrap broker that answers.
        self._connection = Bootstrap(bootstrap_servers, Connection)
        super().__init__(linger_s=linger_ms / 1000, batch_size=batch_size,
                         buffer_memory=buffer_memory, max_block_s=max_block_ms / 1000,
                         delivery_timeout_s=delivery_timeout_ms / 1000,
                         partitioner=partitioner or DefaultPartitioner())
        self._sender = Sender(self, bootstrap_servers, self._connection, self._partitions,
                              acks=ACKS[acks], compression=compression_type or "none",
                              enable_idempotence=enable_idempotence,
                              request_timeout_ms=request_timeout_ms,
                              retry_backoff_s=retry_backoff_ms / 1000,
                              max_in_flight=max_in_flight_requests)
        self._sender_thread = threading.Thread(target=self._sender.run, name="ringlog-producer",
                                               daemon=True)
        self._sender_thread.start()

    # --- the caller's side -------------------------------------------------------------

    def _python_send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                     partition: int | None = None, timestamp: int | None = None,
                     headers: list[tuple[str, bytes | None]] | None = None,
                     on_delivery: Callable[[Exception | None, RecordMetadata | None], None]
                     | None = None) -> RecordFuture:
        """Queue one record; its RecordFuture resolves to its RecordMetadata.

        `on_delivery(error, metadata)` is called once it is acknowledged or
        has failed, from the producer's own thread.

        The pure-Python send(): the reference the C one follows, and where
        it hands the records it does not do itself.
        """
        try:
            count = self.partitions_for_topic(topic)
            chosen = choose_partition(self.partitioner, topic, key, count, partition)
        except _REFUSED as exc:
            return self._failed(topic, exc, on_delivery)
        return self._place(topic, value, key, chosen, timestamp, headers, on_delivery)

    def _place(self, topic: str, value: bytes | None, key: bytes | None, chosen: int,
               timestamp: int | None, headers: list[tuple[str, bytes | None]] | None,
               on_delivery: Callable | None) -> RecordFuture:
        """The rest of send() once the partition is chosen: where the C send()
        hands over a record after asking the partitioner (never asked twice)."""
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
                batch = self._open_batch(topic, chosen)
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
                batch.callbacks.append((index, _on_delivery(on_delivery)))
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
                    batch = self._open[(topic, chosen)] = ProducerBatch(
                        topic, chosen, time.monotonic())
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

    @staticmethod
    def _failed(topic: str, error: BaseException, on_delivery: Callable | None) -> RecordFuture:
        """The handle of a record refused before it was batched."""
        batch = ProducerBatch(topic, -1, time.monotonic(), values=[None], keys=[None],
                              timestamps=[-1])
        future = RecordFuture(batch, 0)
        if on_delivery is not None:
            batch.callbacks.append((0, _on_delivery(on_delivery)))
        batch.settle(-1, error)
        return future

    def partitions_for_topic(self, topic: str) -> int:
        """The topic's partition count (a metadata request the first time, which
        also tells the sender each partition's door)."""
        count = self._partitions.get(topic)
        if count is None:
            response = self._connection.request("metadata", {"topics": [topic]},
                                                 timeout_ms=self.request_timeout_ms)
            entry = response.fields["topics"][0]
            raise_for(entry)
            self._sender.routes.learn(topic, entry["partitions"],
                                      response.fields.get("brokers") or [])
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
            self._sender_thread.join(5)
            self._connection.close()
            if not self._sender_thread.is_alive():
                os.close(self._wake_r)
                os.close(self._wake_w)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# What a partitioner (or the metadata lookup) may raise to refuse a record: its future fails.
_REFUSED = (RinglogError, ValueError)


def _checked(timestamp: int) -> int:
    """Refuse, as Kafka's send() does, a timestamp a record cannot carry."""
    if not 0 <= timestamp < 2**63:
        raise ValueError(f"timestamp {timestamp} is not milliseconds since the epoch "
                         "(0 to 2**63-1); pass None for now")
    return timestamp


def _deliver(future: RecordFuture, callback: Callable) -> None:
    error = future.exception()
    callback(error, None if error else future.result())


def _on_delivery(callback: Callable) -> Callable[[RecordFuture], None]:
    """The batch callback that tells send()'s `on_delivery` a record's outcome."""
    return lambda f: _deliver(f, callback)


if NATIVE is None:
    Producer.send = Producer._python_send
else:  # Producer.send is the C Accumulator.send; tell it the classes it makes
    NATIVE.configure(record_future=RecordFuture, default_partitioner=DefaultPartitioner,
                     on_delivery=_on_delivery, refused=_REFUSED)
