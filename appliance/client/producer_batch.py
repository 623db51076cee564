"""A producer batch and the handles to its outcome, as Kafka's ProducerBatch and
FutureRecordMetadata.

A batch is kept as columns (values, keys, timestamps, headers), the shape the
record encoder takes. The batch holds the outcome of every record in it, so
a record's future is a small object pointing into its batch rather than a
concurrent.futures.Future per record (whose lock and lists cost more than
the rest of send()).

Where the C accumulator is built (appliance.client._accumulator, NATIVE
here), a batch's columns and a future's two fields live in its C base
types, so that the C send() appends to them directly; the Python code reads
and writes them as the same attributes. RINGLOG_PYTHON_SEND=1 in the
environment leaves the C module out (as an install without a compiler does):
plain Python objects and the pure-Python send().
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from types import ModuleType

_CALLBACKS_LOCK = threading.Lock()  # guards every batch's callback list against settle()


def _native_accumulator() -> ModuleType | None:
    """The C accumulator, unless RINGLOG_PYTHON_SEND asks for the pure-Python
    path or no compiler built it."""
    if os.environ.get("RINGLOG_PYTHON_SEND", "") not in ("", "0"):
        return None
    try:
        import appliance.client._accumulator as native
    except ImportError:  # pragma: no cover - exercised where no compiler is present
        return None
    return native


NATIVE = _native_accumulator()


class _PyFutureFields:
    """A future's two fields where there is no C base type for them."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: ProducerBatch, index: int):
        self._batch, self._index = batch, index


_BatchColumns = object if NATIVE is None else NATIVE.Batch
_FutureFields = _PyFutureFields if NATIVE is None else NATIVE.Future


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where a record landed."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class ProducerBatch(_BatchColumns):
    """Records bound for one partition, sent and acknowledged together, as columns."""

    topic: str
    partition: int
    created: float
    values: list[bytes | None]
    keys: list[bytes | None]
    timestamps: list[int]
    headers: list[tuple] | None  # None until a record has headers
    keyed: bool  # some key is not None
    callbacks: list[tuple[int, Callable]]
    size: int
    encoded: bytes | None
    sent_order: int  # when it was first sent, among the producer's batches; -1 before
    deadline: float  # delivery timeout
    retry_at: float
    settled: threading.Event
    base_offset: int
    error: BaseException | None

    def __init__(self, topic: str, partition: int, created: float,
                 values: list[bytes | None] | None = None, keys: list[bytes | None] | None = None,
                 timestamps: list[int] | None = None, headers: list[tuple] | None = None,
                 keyed: bool = False, callbacks: list[tuple[int, Callable]] | None = None,
                 size: int = 0):
        self.topic, self.partition, self.created = topic, partition, created
        self.values = [] if values is None else values
        self.keys = [] if keys is None else keys
        self.timestamps = [] if timestamps is None else timestamps
        self.headers = headers
        self.keyed = keyed
        self.callbacks = [] if callbacks is None else callbacks
        self.size = size
        self.encoded = None
        self.sent_order = -1
        self.window_index = -1  # its place among its partition's batches sent (accumulator)
        self.deadline = 0.0
        self.retry_at = 0.0
        self.settled = threading.Event()
        self.base_offset = -1
        self.error = None

    def __repr__(self) -> str:
        return (f"ProducerBatch(topic={self.topic!r}, partition={self.partition}, "
                f"records={len(self.values)}, size={self.size}, "
                f"settled={self.settled.is_set()})")

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


class RecordFuture(_FutureFields):
    """One record's delivery: the Future-like handle `send()` returns,
    RecordFuture(batch, index)."""

    __slots__ = ()

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


class ManyFuture:
    """The delivery of one send_many() call: spans (batch, first index, count)."""

    __slots__ = ("_spans",)

    def __init__(self, spans: list[tuple[ProducerBatch, int, int]]):
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
