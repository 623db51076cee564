"""The record accumulator: each partition's open batch, the memory the batches
hold (`buffer.memory`) and when a batch is ready to go (`batch.size` reached
or `linger.ms` waited), as Kafka's RecordAccumulator.

The caller's threads put records in; the sender thread (sender.py) drains
the ready batches and hands each one's outcome back. Both sides work under
`_lock`, the one Condition that send(), flush() and the sender wait on.

Where the C accumulator is built (producer_batch.NATIVE), this class extends
its Accumulator type: the fields send() touches per record are C members
(read and written here as plain attributes), `_lock` is a Condition on the
C module's RLock, and send() is a C method that takes that very lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

from appliance.client.producer_batch import NATIVE, ProducerBatch
from appliance.partitioner import Partitioner
from shm.errors import RequestTimedOutError

RECORD_OVERHEAD = 16  # a record's varints and attributes, for sizing batches
# A partition's batches sent past its oldest unacknowledged one, at most: the
# broker remembers a producer's last five batches (workers/producer_state.py),
# so a retry further back than that would be answered DUPLICATE_SEQUENCE_NUMBER
# with its offsets lost to the producer. Kafka bounds it with five requests in
# flight on the one connection per broker; here requests to a partition may
# go by two paths (its leader's front end, then its door), so it is counted.
IDEMPOTENT_WINDOW = 5


class RecordAccumulator(object if NATIVE is None else NATIVE.Accumulator):
    """Batches waiting to be sent or retried, and the room left for more.

    The Producer extends this class rather than holding one, and its send()
    and send_many() append to `_open`'s batches themselves: a call or an
    attribute hop per record would cost a tenth of send(). The underscored
    methods are the sender's side; they are underscored because they become
    the Producer's, which users see.
    """

    def __init__(self, *, linger_s: float, batch_size: int, buffer_memory: int,
                 max_block_s: float, delivery_timeout_s: float, partitioner: Partitioner):
        self.linger_s = linger_s
        self.batch_size = batch_size
        self.buffer_memory = buffer_memory
        self.max_block_s = max_block_s
        self.delivery_timeout_s = delivery_timeout_s
        self.partitioner = partitioner
        self._buffered = 0  # bytes of records sent but not yet acknowledged or failed
        self._unfinished = 0  # records not yet acknowledged or failed
        # The sender thread sleeps on its socket and this pipe: callers write
        # a byte when a batch opens or closes, replies wake it by themselves.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._open: dict[tuple[str, int], ProducerBatch] = {}
        self._retries: list[ProducerBatch] = []  # closed: due now or at their retry_at
        # partition -> window indexes of its batches sent and not yet settled, and the next
        self._unsettled: dict[tuple[str, int], list[int]] = {}
        self._next_window_index: dict[tuple[str, int], int] = {}
        # Re-entrant (a delivery callback, run by the sender under the lock, may
        # send()); the C module's RLock when there is one, so that its send()
        # can take it without a Python call.
        self._lock = threading.Condition(threading.RLock() if NATIVE is None else NATIVE.RLock())
        self._closing = False

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

    def _open_batch(self, topic: str, partition: int) -> ProducerBatch:
        """A new open batch for the partition (none is open). Caller holds the lock."""
        batch = self._open[(topic, partition)] = ProducerBatch(topic, partition, time.monotonic())
        return batch

    def _close_batch(self, batch: ProducerBatch) -> None:
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

    # --- the sender's side --------------------------------------------------------------

    def _next_ready_s(self) -> float:
        """How long until a batch is ready: its linger or retry time. Caller holds the lock."""
        now = time.monotonic()
        times = [b.created + self.linger_s for b in self._open.values()]
        times += [b.retry_at for b in self._retries
                  if b.window_index >= 0 or not self._window_full((b.topic, b.partition))]
        return max(0.0, min(times) - now) if times else 0.5

    def _window_full(self, partition: tuple[str, int]) -> bool:
        """Whether a new batch of the partition must wait for an older one's
        answer (IDEMPOTENT_WINDOW)."""
        unsettled = self._unsettled.get(partition)
        return bool(unsettled) and \
            self._next_window_index.get(partition, 0) - unsettled[0] >= IDEMPOTENT_WINDOW

    def _take_window(self, batch: ProducerBatch) -> bool:
        """A place in its partition's window for a batch about to be sent;
        False when it must wait. A retry has its place already."""
        if batch.window_index >= 0:
            return True
        partition = (batch.topic, batch.partition)
        if self._window_full(partition):
            return False
        batch.window_index = self._next_window_index.get(partition, 0)
        self._next_window_index[partition] = batch.window_index + 1
        self._unsettled.setdefault(partition, []).append(batch.window_index)
        return True

    def _drain(self) -> list[ProducerBatch]:
        """Batches to send now: closed ones whose retry time has come, and open
        ones that have lingered long enough. Caller holds the lock.

        At most one batch per partition per request, and a partition's first
        waiting batch goes before its later ones: while it backs off for a
        retry, the partition sends nothing. Otherwise newer batches overtake
        it, and an idempotent retry that arrives after more than
        REMEMBERED_BATCHES of them is no longer recognised: the appliance
        answers DUPLICATE_SEQUENCE_NUMBER and its offsets are lost to the
        producer (Kafka's accumulator keeps this order too).
        """
        now = time.monotonic()
        for batch in list(self._open.values()):
            if now - batch.created >= self.linger_s:
                self._close_batch(batch)
        ready, waiting, seen = [], [], set()
        for batch in self._retries:  # one pass: no remove() per batch taken
            partition = (batch.topic, batch.partition)
            first = partition not in seen
            seen.add(partition)
            go = first and batch.retry_at <= now and self._take_window(batch)
            (ready if go else waiting).append(batch)
        self._retries = waiting
        return ready

    def _reenqueue(self, batch: ProducerBatch, retry_at: float) -> None:
        """Put a batch back to be sent again at `retry_at`, ahead of its
        partition's batches that were sent after it or not at all. Caller
        holds the lock."""
        batch.retry_at = retry_at
        for index, waiting in enumerate(self._retries):
            if (waiting.topic, waiting.partition) == (batch.topic, batch.partition) and (
                    waiting.sent_order < 0 or waiting.sent_order > batch.sent_order):
                self._retries.insert(index, batch)
                return
        self._retries.append(batch)

    def _complete(self, batch: ProducerBatch, base_offset: int,
                  error: BaseException | None) -> None:
        """Resolve a batch's futures and free its room. Caller holds the lock."""
        batch.settle(base_offset, error)
        if batch.window_index >= 0:
            unsettled = self._unsettled[(batch.topic, batch.partition)]
            unsettled.remove(batch.window_index)
            if not unsettled:
                del self._unsettled[(batch.topic, batch.partition)]
        self._unfinished -= len(batch.values)
        self._buffered -= batch.size

    def _abort(self, batches: list[ProducerBatch], error: BaseException) -> None:
        """Fail `batches` and every batch still held: the sender is gone. Caller
        holds the lock."""
        for batch in [*batches, *self._retries, *self._open.values()]:
            if not batch.settled.is_set():
                self._complete(batch, -1, error)
        self._retries.clear()
        self._open.clear()
        self._lock.notify_all()
